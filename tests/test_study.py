"""`mtdqn study`: bad study files refused up front; a 2 variants x 2 seeds study (and its single-game baseline)
on a real game at a tiny budget runs, is interrupted mid-run, resumes without re-running finished runs, and
reports over its runs; committed results count as done; the Ray backend runs the smallest study."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

COMMON = {"frames-per-game": 800, "learning-starts": 400, "envs-per-game": 1, "eval-episodes": 1,
          "max-episode-frames": 400, "replay-size": 800, "checkpoint-interval": 400, "log-interval": 400,
          "conflict-interval": 0, "target-update-period": 50}
VARIANTS = {"shared": {}, "dueling": {"dueling": True}}


def write_study(folder: Path, name="tiny", **changes) -> Path:
    data = {"name": name, "suite": "pong", "seeds": [0, 1], "common": COMMON, "variants": VARIANTS,
            "baseline": {}, "track": True, "out": "out"} | changes
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def env() -> dict:
    return {**os.environ, "WANDB_MODE": "disabled"}


def study(*args, cwd: Path, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "study", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env(), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtdqn: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


BAD = [
    ("unknown option", "variants:\n  shared: {sharng: separate}\n",
     ["variant 'shared'", "'sharng'", "did you mean sharing"]),
    ("duplicate variant", "variants:\n  shared: {}\n  shared: {dueling: true}\n",
     ["'shared' is given twice", "5:3", "6:3"]),
    ("invalid value", "variants:\n  a: {gamma: 1.5}\n", ["variant 'a'", "--gamma must be in [0, 1]"]),
    ("wrong type", "variants:\n  a: {frames-per-game: lots}\n", ["variant 'a'", "--frames-per-game", "'lots'"]),
    ("bad choice", "variants:\n  a: {sharing: sharedd}\n", ["variant 'a'", "'sharedd'", "separate"]),
    ("options that fail together", "variants:\n  a: {balance: weighted}\n", ["variant 'a'", "--task-weights"]),
    ("unknown key", "variants: {a: {}}\nbaselines: {}\n", ["unknown key 'baselines'", "did you mean baseline"]),
    ("seed in a variant", "variants: {a: {seed: 3}}\n", ["'seed' is set by the study", "seeds"]),
    ("unknown game", "variants: {a: {}}\n", ["'brekout'", "breakout"]),
    ("bad seeds", "variants: {a: {}}\n", ["seeds must be a list of integers >= 0"]),
    ("reserved name", "variants: {report: {}}\n", ["variant name 'report'"]),
    ("per-seed list too short", "variants: {a: {learning-rate: [0.1, 0.2]}}\n",
     ["variant 'a'", "'learning-rate' lists 2 values for 1 seed", "one value per seed"]),
]


@pytest.mark.parametrize("case, body, needles", BAD, ids=[b[0] for b in BAD])
def test_bad_study_files_are_one_line_exit_2_and_nothing_is_written(tmp_path, capsys, case, body, needles):
    suite = "pong,brekout" if case == "unknown game" else "pong"
    seeds = "[0, -1]" if case == "bad seeds" else "[0]"
    (tmp_path / "bad.yaml").write_text(f"name: bad\nsuite: {suite}\nseeds: {seeds}\n{body}out: {tmp_path / 'out'}\n")
    from mtdqn.scripts.cli import main

    with pytest.raises(SystemExit) as e:
        main(["study", str(tmp_path / "bad.yaml")])
    err = capsys.readouterr().err
    one_line_error(subprocess.CompletedProcess([], e.value.code, "", err), *needles)
    assert not (tmp_path / "out").exists()


def test_a_bad_file_exits_2_from_the_command_line(tmp_path):
    path = write_study(tmp_path, variants={"a": {"learning-rat": 0.1}})
    one_line_error(study(path, cwd=tmp_path, check=False), "'learning-rat'", "did you mean learning-rate")
    assert not (tmp_path / "out").exists()


def test_the_plan_lays_out_variants_suites_seeds_and_a_baseline_per_game(tmp_path):
    path = write_study(tmp_path, suite=["pong,breakout", "qbert"], seeds=[3])
    proc = study(path, "--dry-run", "--jobs", "1", cwd=tmp_path)
    rows = [line.split()[:2] for line in proc.stdout.splitlines()[:-1]]
    assert rows == [["new", "shared/pong+breakout/seed3"], ["new", "dueling/pong+breakout/seed3"],
                    ["new", "shared/qbert/seed3"], ["new", "dueling/qbert/seed3"], ["new", "baseline/pong/seed3"],
                    ["new", "baseline/breakout/seed3"], ["new", "baseline/qbert/seed3"]]
    line = next(l for l in proc.stdout.splitlines() if "dueling/pong+breakout" in l)
    for flag in ("--dueling", "--suite=pong,breakout", "--seed=3", "--threads=1", "--track", "--wandb-group=tiny",
                 "--frames-per-game=800", "--out=out/dueling/pong+breakout/seed3"):
        assert flag in line.split()
    assert "--dueling" not in next(l for l in proc.stdout.splitlines() if "baseline/qbert" in l)
    assert not (tmp_path / "out").exists()


def test_a_list_gives_each_seed_its_own_value(tmp_path):
    # e.g. each seed's own random grouping (`mtdqn group --random --seed S`), kept by seed under --seeds
    groups = ["pong;breakout;qbert", "pong,breakout;qbert", "pong;breakout,qbert"]
    path = write_study(tmp_path, suite="pong,breakout,qbert", seeds=[0, 1, 2], baseline=False,
                       variants={"random": {"sharing": "grouped", "groups": groups}})
    lines = study(path, "--dry-run", "--seeds", "0,2", cwd=tmp_path).stdout.splitlines()[:-1]
    assert [line.split()[1] for line in lines] == ["random/pong+breakout+qbert/seed0", "random/pong+breakout+qbert/seed2"]
    # the dry run prints commands to paste into a shell: a ';' is quoted
    assert "'--groups=pong;breakout;qbert'" in lines[0].split() and "'--groups=pong;breakout,qbert'" in lines[1].split()


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """The study run until its second run has a checkpoint, then Ctrl-C (SIGINT to the study alone)."""
    root = tmp_path_factory.mktemp("study")
    path = write_study(root)
    proc = subprocess.Popen([sys.executable, "-m", "mtdqn.scripts", "study", str(path)], cwd=root, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "(started shared/pong/seed1)" in line:
            break
    second = root / "out" / "shared" / "pong" / "seed1"
    deadline = time.monotonic() + 300
    while not list(second.glob("checkpoints/*.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    first = root / "out" / "shared" / "pong" / "seed0"
    stamps = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}
    return root, path, proc.returncode, "".join(lines) + out, err, stamps


def test_an_interrupted_study_stops_its_run_at_a_checkpoint(interrupted):
    root, _, code, out, err, stamps = interrupted
    assert code == 130, err
    assert "1 done, 1 running, 4 left" in out and "stopped shared/pong/seed1: resumable" in out
    assert "continue with: mtdqn study" in err.strip().splitlines()[-1]
    runs = root / "out"
    assert (runs / "shared/pong/seed0/evals/frames_000000800/eval.json").is_file()
    second = runs / "shared/pong/seed1"
    assert (second / "config.yaml").is_file() and list(second.glob("checkpoints/*.pt"))
    assert not list(second.glob("evals/*/eval.json")) and "stopped by SIGINT" in (second / "train.log").read_text()
    assert not (runs / "dueling").exists() and not (runs / "baseline").exists()
    assert any(p.name == "metrics.jsonl" for p in stamps)


@pytest.fixture(scope="module")
def resumed(interrupted):
    root, path, *_ = interrupted
    return study(path, cwd=root)


def test_a_rerun_skips_finished_runs_and_resumes_the_interrupted_one(interrupted, resumed):
    root, _, _, _, _, stamps = interrupted
    assert "skipped 1 finished: shared/pong/seed0" in resumed.stdout
    assert "(resumed shared/pong/seed1)" in resumed.stdout and "started shared/pong/seed0" not in resumed.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the finished run was not touched
    assert "resuming" in (root / "out/shared/pong/seed1/train.log").read_text()
    for run in ("shared/pong/seed0", "shared/pong/seed1", "dueling/pong/seed0", "dueling/pong/seed1",
                "baseline/pong/seed0", "baseline/pong/seed1"):
        folder = root / "out" / run
        assert (folder / "evals/frames_000000800/eval.json").is_file(), run
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["track"] and config["wandb_group"] == "tiny" and config["threads"] == 1
        assert config["dueling"] == run.startswith("dueling")
        assert (folder / "train.log").is_file()
    state = json.loads((root / "out/study.json").read_text())["runs"]
    assert state["shared/pong/seed1"]["segments"] == 2 and "shared/pong/seed0" in state
    assert "6 done, 0 running, 0 left" in resumed.stdout


def test_the_report_compares_the_variants_over_their_seeds_against_the_baseline(interrupted, resumed):
    root, path, *_ = interrupted
    report = root / "out" / "report"
    result = json.loads((report / "compare.json").read_text())
    assert result["reference"] == "baseline"
    assert {l: v["runs"] for l, v in result["labels"].items()} == {"baseline": 2, "shared": 2, "dueling": 2}
    assert set(result["pairs"]) == {"baseline > shared", "baseline > dueling", "shared > dueling"}
    (row,) = result["games"]
    assert row["game"] == "pong" and row["runs"] == {"baseline": 2, "shared": 2, "dueling": 2}
    for name in ("compare.md", "compare.csv", "compare.png", "compare_profiles.png", "study.md"):
        assert (report / name).stat().st_size > 0, name
    text = (report / "study.md").read_text()
    assert text.count("| finished |") == 6 and f"mtdqn study {path}" in text
    assert "| shared/pong/seed1 | shared | pong | 1 | finished | 800 |" in text
    assert "| pong |" in resumed.stdout  # the tables are printed too


def test_a_finished_study_reruns_nothing_and_a_changed_one_is_refused(interrupted, resumed, tmp_path):
    root, path, *_ = interrupted
    again = study(path, cwd=root)
    assert "skipped 6 finished" in again.stdout and "started" not in again.stdout
    changed = write_study(root, name="tiny", common=COMMON | {"learning-rate": 0.001})
    assert changed == path
    proc = study(path, cwd=root, check=False)
    one_line_error(proc, "shared/pong/seed0", "learning_rate", "0.0001", "0.001")
    write_study(root)


def test_committed_results_count_as_finished_without_checkpoints(interrupted, resumed, tmp_path):
    """A run folder with its final evaluation is done wherever it lies (e.g. results committed under docs/runs)."""
    root = interrupted[0]
    for run in ("shared/pong/seed0", "shared/pong/seed1"):
        shutil.copytree(root / "out" / run, tmp_path / "committed" / run, ignore=shutil.ignore_patterns("checkpoints"))
    path = write_study(tmp_path, variants={"shared": {}}, baseline=False, out=str(tmp_path / "committed"))
    proc = study(path, "--dry-run", cwd=tmp_path)
    assert [l.split()[0] for l in proc.stdout.splitlines()[:-1]] == ["finished", "finished"]


def test_the_ray_backend_runs_the_smallest_study(tmp_path):
    pytest.importorskip("ray")
    path = write_study(tmp_path, seeds=[0], variants={"shared": {}}, baseline=False, track=False,
                       common=COMMON | {"frames-per-game": 600, "checkpoint-interval": 600})
    proc = study(path, "--backend", "ray", cwd=tmp_path)
    run = tmp_path / "out/shared/pong/seed0"
    assert (run / "evals/frames_000000600/eval.json").is_file() and (run / "train.log").is_file()
    assert "1 done, 0 running, 0 left" in proc.stdout and (tmp_path / "out/report/study.md").is_file()
