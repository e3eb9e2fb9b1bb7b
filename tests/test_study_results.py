"""A study's kept results (`results:` in the study file, agents/studies/results.py): runs that finish are
copied there as small files; a fresh study folder takes them back as finished and trains only what is
missing; a kept run of another configuration is refused. `--budget-scale` runs a study file at a fraction of
its budget in a folder of its own, and `--seeds` runs some of its seeds; the atlas's study files run so."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMMON = {"preset": "minatar-dqn", "frames-per-game": 300, "learning-starts": 100, "replay-size": 300,
          "eval-interval": 300, "eval-episodes": 1, "max-episode-frames": 200, "checkpoint-interval": 300,
          "log-interval": 100, "conflict-interval": 0}


def write_study(folder: Path, **changes) -> Path:
    data = {"name": "kept", "suite": "minatar/breakout", "seeds": [0, 1], "common": COMMON,
            "variants": {"shared": {}}, "out": "out", "results": "kept"} | changes
    path = folder / "kept.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def study(*args, cwd: Path, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "study", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"},
                          timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """The study trained once: both runs finished, kept beside the study file."""
    root = tmp_path_factory.mktemp("kept")
    path = write_study(root)
    return root, path, study(path, cwd=root)


def test_finished_runs_are_kept_as_small_files(kept):
    root, _, proc = kept
    assert "2 done, 0 running, 0 left" in proc.stdout
    for seed in (0, 1):
        run = root / "out" / "shared" / "minatar-breakout" / f"seed{seed}"
        copy = root / "kept" / "shared" / "minatar-breakout" / f"seed{seed}"
        assert (run / "checkpoints").is_dir()
        assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == [
            "command.txt", "config.yaml", "evals/frames_000000300/eval.json", "learning_curves.png", "machine.jsonl",
            "metrics.jsonl", "train.log"]
        assert (copy / "evals/frames_000000300/eval.json").read_bytes() == \
            (run / "evals/frames_000000300/eval.json").read_bytes()
    assert not list((root / "kept").rglob(".*partial"))


def test_a_fresh_folder_takes_the_kept_runs_as_finished_and_trains_only_what_is_missing(kept, tmp_path):
    root, _, _ = kept
    (tmp_path / "kept").symlink_to(root / "kept")
    path = write_study(tmp_path, seeds=[0, 1, 2])
    dry = study(path, "--dry-run", cwd=tmp_path)
    assert [line.split()[0] for line in dry.stdout.splitlines()[:-1]] == ["kept", "kept", "new"]
    assert "2 finished in" in dry.stdout.splitlines()[-1] and not (tmp_path / "out").exists()
    proc = study(path, cwd=tmp_path)
    assert ("2 finished runs copied in from" in proc.stdout
            and "shared/minatar-breakout/seed0, shared/minatar-breakout/seed1" in proc.stdout)
    assert "started shared/minatar-breakout/seed2" in proc.stdout and "started shared/minatar-breakout/seed0" not in proc.stdout
    assert (tmp_path / "kept/shared/minatar-breakout/seed2/evals/frames_000000300/eval.json").is_file()
    assert not (tmp_path / "out/shared/minatar-breakout/seed0/checkpoints").exists()  # a copy, not a rerun
    report = (tmp_path / "out/report/study.md").read_text()
    assert report.count("| finished |") == 3


def test_a_kept_run_of_another_configuration_is_refused_before_anything_is_written(kept, tmp_path):
    root, _, _ = kept
    (tmp_path / "kept").symlink_to(root / "kept")
    path = write_study(tmp_path, common=COMMON | {"learning-rate": 0.001})
    proc = study(path, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "kept/shared/minatar-breakout/seed0 holds a run of another configuration (learning_rate" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_budget_scale_multiplies_every_count_and_keeps_apart(tmp_path):
    path = ROOT / "studies/atlas/realized.yaml"
    proc = study(path, "--dry-run", "--budget-scale", "0.002", "--seeds", "0", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert len(lines) == 17 and all(line.startswith("new ") for line in lines[:-1])  # kept results not read
    assert lines[-1] == "study atlas-realized: 16 runs, 0 finished; folder runs/studies/atlas-realized-x0.002"
    five = lines[-2].split()
    for flag in ("--frames-per-game=200", "--learning-starts=10", "--epsilon-decay-frames=200", "--replay-size=200",
                 "--target-update-period=2", "--eval-interval=50", "--eval-episodes=1", "--max-episode-frames=216",
                 "--checkpoint-interval=100", "--conflict-interval=2", "--log-interval=20", "--suite=minatar",
                 "--seed=0"):
        assert flag in five, flag
    for bad, needle in ((["--budget-scale", "0"], "--budget-scale must be in (0, 1], got 0"),
                        (["--budget-scale", "1.5"], "got 1.5"),
                        (["--seeds", "0,7"], "--seeds '0,7' must list distinct seeds of the study file's, 0,1,2,3,4")):
        proc = study(path, *bad, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_the_atlas_study_runs_at_a_tiny_budget_and_the_atlas_reads_it(tmp_path):
    """studies/atlas/realized.yaml end to end from the repo's file, one seed at 0.2% of its budget (200 agent
    steps per game, 16 runs), then `mtdqn atlas` over the folder: every ordered pair has its runs and the
    realized matrix is game i's score with j minus alone, as the runs' own eval.json files give them."""
    import json

    from mtdqn.agents.multitask.grouping import read_affinity

    proc = study(ROOT / "studies/atlas/realized.yaml", "--budget-scale", "0.002", "--seeds", "0", "--jobs", "2",
                 cwd=tmp_path)
    assert "16 done, 0 running, 0 left" in proc.stdout
    out = tmp_path / "runs/studies/atlas-realized-x0.002"
    atlas = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "atlas", str(out), "--out", str(tmp_path / "atlas"),
                            "--reps", "100"], capture_output=True, text=True, timeout=600)
    assert atlas.returncode == 0, atlas.stderr
    assert "20 of 20 ordered pairs have runs" in (tmp_path / "atlas/atlas.md").read_text()

    def score(suite: str, game: str) -> float:
        report = json.loads((out / "shared" / suite / "seed0/evals/frames_000000200/eval.json").read_text())
        return next(g["hns"] for g in report["games"] if g["game"] == game)

    games, realized = read_affinity(str(tmp_path / "atlas/realized.csv"))
    assert games == ["minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/seaquest",
                     "minatar/space_invaders"]
    pair = score("minatar-breakout+minatar-space_invaders", "minatar/space_invaders")
    assert realized[1, 4] == pytest.approx(pair - score("minatar-space_invaders", "minatar/space_invaders"), abs=1e-6)


def test_a_folder_for_the_study_file_and_a_bad_results_key_are_one_line(tmp_path):
    proc = study(tmp_path, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"mtdqn: error: study file {str(tmp_path)!r} is a folder: give a study's YAML file, e.g. studies/minatar_dqn.yaml")
    proc = study(write_study(tmp_path, results=3), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "results must be a folder (relative to the study file), got 3" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_learned_and_grouping_study_files_run_at_a_tiny_budget_and_compare_reads_them(tmp_path):
    """The atlas's two other study files from the repo, seed 0 at 0.2% of the budget: the learned run writes
    its gates' overlap (the atlas's third predictor), the random arm trains seed 0's own partition into two
    torsos, the realized arm freeway apart from the other four, and `mtdqn compare` judges the arms as part 3
    does (one run each: no interval, and it says so)."""
    import json

    import numpy as np

    from mtdqn.agents.studies.atlas_runs import read_overlap

    games = ["minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/seaquest", "minatar/space_invaders"]
    for name, runs in (("learned", 1), ("grouping", 2)):
        proc = study(ROOT / f"studies/atlas/{name}.yaml", "--budget-scale", "0.002", "--seeds", "0", "--jobs", "2",
                     cwd=tmp_path)
        assert f"{runs} done, 0 running, 0 left" in proc.stdout
    learned = tmp_path / "runs/studies/atlas-learned-x0.002/learned/minatar/seed0"
    overlap = read_overlap(learned / "overlap.csv", games)
    assert np.allclose(np.diag(overlap), 1.0) and np.allclose(overlap, overlap.T)
    assert ((overlap >= 0) & (overlap <= 1)).all()
    grouping = tmp_path / "runs/studies/atlas-grouping-x0.002"
    file = yaml.safe_load((ROOT / "studies/atlas/grouping.yaml").read_text())
    config = yaml.safe_load((grouping / "random/minatar/seed0/config.yaml").read_text())
    assert config["sharing"] == "grouped" and config["groups"] == file["variants"]["random"]["groups"][0]
    config = yaml.safe_load((grouping / "realized/minatar/seed0/config.yaml").read_text())
    assert config["groups"] == ("minatar/asterix,minatar/breakout,minatar/seaquest,minatar/space_invaders;"
                                "minatar/freeway")
    out = tmp_path / "compare"
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "compare", str(grouping / "random/minatar/seed0"),
                           str(learned), "--labels", "random,learned",
                           "--out", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "compare.json").read_text())
    assert {l: v["runs"] for l, v in result["labels"].items()} == {"random": 1, "learned": 1}
    assert set(result["profiles"]) == {"taus", "random", "learned"} and set(result["training_hours"]) == {
        "random", "learned"}
    assert "no interval" in (out / "compare.md").read_text()
