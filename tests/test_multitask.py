"""Sharing modes and balancers end to end on 2 real games: train, checkpoint, resume, evaluate; then
`mtdqn affinity` -> `mtdqn group` -> `--sharing grouped --groups FILE`, and `mtdqn compare`."""

import json

import pytest
import torch
import yaml

from test_cli import mtdqn

TRAIN = ["--suite", "pong,breakout", "--frames-per-game", "2000", "--learning-starts", "1000", "--envs-per-game", "2",
         "--eval-interval", "0", "--eval-episodes", "2", "--checkpoint-interval", "1000", "--log-interval", "500",
         "--max-episode-frames", "800", "--replay-size", "2000", "--target-update-period", "50", "--batch-size", "16",
         "--conflict-interval", "10", "--conflict-batch-size", "32", "--seed", "3", "--save-replay",
         "--torso-width", "0.25"]  # what is tested is the plumbing of each mode, not the torso: a quarter is cheaper
# every sharing mode and every balancer other than the default `equal` (tested in test_cli) appears once
MODES = {
    "shared-popart": ["--sharing", "shared", "--balance", "popart", "--no-reward-clip"],
    "separate-weighted": ["--sharing", "separate", "--balance", "weighted", "--task-weights", "pong=3"],
    "soft-equal": ["--sharing", "soft", "--soft-coupling", "0.5"],
    "grouped-pcgrad": ["--sharing", "grouped", "--balance", "pcgrad"],  # groups from `mtdqn group`, below
}


def checkpoints(run):
    return sorted((run / "checkpoints").glob("frames_*.pt"))


def load(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each mode trains to 2,000 frames per game, resumes to 3,000 and is evaluated; grouped uses chosen groups."""
    root = tmp_path_factory.mktemp("mtl")
    out = {}
    for name, flags in MODES.items():
        run = root / name
        if name == "grouped-pcgrad":
            mtdqn("affinity", out["shared-popart"]["run"], "--out", root / "affinity", cwd=root)
            chosen = mtdqn("group", "--affinity", root / "affinity" / "affinity.csv", "--networks", "2",
                           "--out", root / "groups.txt", cwd=root)
            flags = flags + ["--groups", str(root / "groups.txt")]
            out["group_stdout"] = chosen.stdout
        mtdqn("train", *TRAIN, *flags, "--out", run, cwd=root)
        first = load(checkpoints(run)[-1])
        mtdqn("train", "--resume", run, "--frames-per-game", "3000", cwd=root)
        evaluated = mtdqn("evaluate", run, "--episodes", "2", cwd=root)
        out[name] = {"run": run, "first": first, "final": load(checkpoints(run)[-1]), "evaluate": evaluated.stdout}
    out["root"] = root
    return out


@pytest.mark.parametrize("name", list(MODES))
def test_each_mode_trains_resumes_and_evaluates(runs, name):
    r = runs[name]
    config = yaml.safe_load((r["run"] / "config.yaml").read_text())
    assert [config["sharing"], config["balance"]] == name.split("-")
    first, final = r["first"], r["final"]
    assert min(first["frames"]) >= 2000 and min(final["frames"]) >= 3000
    assert final["learner"]["updates"] > first["learner"]["updates"] > 0
    assert final["network"] == first["network"]
    for game in ("pong", "breakout"):
        assert f"| {game} | " in r["evaluate"]
    rows = [json.loads(line) for line in (r["run"] / "metrics.jsonl").read_text().splitlines()]
    frames = [row["frames_per_game"] for row in rows]
    assert frames == sorted(frames)  # the resume dropped nothing twice and kept order
    assert {"train/pong/td_loss", "train/breakout/td_loss", "conflict/cosine_mean"} <= set().union(*rows)


def test_sharing_modes_build_their_torsos(runs):
    assert runs["shared-popart"]["final"]["network"]["torso_of"] == [0, 0]
    assert runs["separate-weighted"]["final"]["network"]["torso_of"] == [0, 1]
    soft = runs["soft-equal"]["final"]["network"]
    assert soft["torso_of"] == [0, 1] and soft["tied_init"]
    rows = [json.loads(line) for line in (runs["soft-equal"]["run"] / "metrics.jsonl").read_text().splitlines()]
    penalties = [row["train/soft_penalty"] for row in rows if "train/soft_penalty" in row]
    assert penalties and all(p > 0 for p in penalties)  # the torsos moved apart and the penalty saw it


def test_popart_statistics_track_raw_returns_and_survive_the_resume(runs):
    final = runs["shared-popart"]["final"]
    online = final["learner"]["online"]
    assert not torch.equal(online["popart_mu"], torch.zeros(2)) and (online["popart_sigma"] > 0).all()
    assert final["learner"]["popart_nu"].shape == (2,)


def test_separate_networks_show_no_conflict_and_weighted_config_is_kept(runs):
    run = runs["separate-weighted"]["run"]
    lines = (run / "conflict.csv").read_text().splitlines()[1:]
    cross = [float(l.split(",")[-1]) for l in lines if l.split(",")[3] != l.split(",")[4]]
    assert cross and all(v == 0.0 for v in cross)
    assert yaml.safe_load((run / "config.yaml").read_text())["task_weights"] == "pong=3"


def test_affinity_and_group_feed_grouped_sharing(runs):
    root = runs["root"]
    matrix = (root / "affinity" / "affinity.csv").read_text().splitlines()
    assert matrix[0] == "source\\target,pong,breakout" and len(matrix) == 3
    assert (root / "affinity" / "cosine.png").stat().st_size > 1000
    groups_line = [l for l in (root / "groups.txt").read_text().splitlines() if not l.startswith("#")][0]
    assert f'--groups "{groups_line}"' in runs["group_stdout"]
    parts = [p.split(",") for p in groups_line.split(";")]
    expected = [next(k for k, p in enumerate(parts) if g in p) for g in ("pong", "breakout")]
    assert runs["grouped-pcgrad"]["final"]["network"]["torso_of"] == expected


def test_compare_puts_runs_side_by_side(runs, tmp_path):
    proc = mtdqn("compare", runs["separate-weighted"]["run"], runs["shared-popart"]["run"], "--labels",
                 "separate,shared", "--out", tmp_path / "cmp", cwd=tmp_path)
    assert ("| game | frames | HNS separate (1 run) | HNS shared (1 run) | shared / separate | negative transfer |"
            in proc.stdout)
    assert "| separate | 1 | " in proc.stdout and "| separate > shared | 1 vs 1 |" in proc.stdout
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [row["game"] for row in result["games"]] == ["pong", "breakout"]
    # run folders with periodic evaluations also get the time-to-score table and IQM curves
    assert "Time to score" in proc.stdout and set(result["frames_to_reference_iqm"]) == {"shared"}
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {"compare.json", "compare.md", "compare.csv",
                                                              "compare_runs.csv", "compare.png",
                                                              "compare_profiles.png", "compare_curves.png"}


@pytest.mark.parametrize("flags, message", [
    (["--sharing", "grouped"], "--sharing grouped needs --groups"),
    (["--sharing", "grouped", "--groups", "pong"], "leaves out breakout"),
    (["--groups", "pong;breakout"], "--groups is for --sharing grouped"),
    (["--balance", "weighted"], "--balance weighted needs --task-weights"),
    (["--balance", "weighted", "--task-weights", "alien=2"], "'alien', which is not in the suite"),
    (["--balance", "weighted", "--task-weights", "pong=lots"], "is not game=number"),
    (["--task-weights", "pong=2"], "--task-weights is for --balance weighted"),
    (["--soft-coupling", "-1"], "--soft-coupling must be >= 0"),
    (["--balance", "gradnorm"], "gradnorm"),
])
def test_bad_multitask_options_fail_in_one_line_before_anything_is_written(tmp_path, flags, message):
    proc = mtdqn("train", "--suite", "pong,breakout", *flags, "--out", tmp_path / "run", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
