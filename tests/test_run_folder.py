"""One run folder, one truth: one writer (a lock two real processes contend for), --force leaves nothing of
the old run, a corrupt checkpoint and a discarded attempt's evaluations are set aside, readers use the
current evaluation, config.yaml holds what ran (groups themselves, protocol flags as applied)."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import wandb_records
from mtdqn.agents.core import checkpoint
from mtdqn.agents.studies.compare import load, load_merged
from mtdqn.agents.multitask.sharing import parse_groups
from mtdqn.agents.studies.study import Run, check_folder
from mtdqn.agents.training.run_folder import LOCK, holder, is_locked, set_aside_corrupt
from mtdqn.agents.training.runner import Trainer
from mtdqn.scripts.train import parse
from test_cli import source_env
from test_resume import config

TINY = ["--envs-per-game", "1", "--learning-starts", "400", "--eval-episodes", "1", "--max-episode-frames", "400",
        "--replay-size", "2000", "--log-interval", "400", "--target-update-period", "50", "--conflict-interval", "0"]


def start(*args, cwd: Path, wandb="disabled") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtdqn.scripts", "train", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=source_env(WANDB_MODE=wandb))


def train(*args, cwd: Path, wandb="disabled") -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "train", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=source_env(WANDB_MODE=wandb))
    assert proc.returncode == 0, proc.stderr
    return proc


def until_progress(proc: subprocess.Popen) -> str:
    """Read stderr until the first progress line (the process then holds the lock and is training); what it read."""
    read = ""
    for line in proc.stderr:
        read += line
        if line.startswith(("progress:", "checkpoint: ")):
            return read
    raise AssertionError(f"the run ended first (rc {proc.wait()})")


def test_a_live_run_refuses_a_second_writer_and_a_dead_ones_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    first = start("--suite", "pong", *TINY, "--frames-per-game", "1000000", "--progress-interval", "0.2",
                  "--out", run, cwd=tmp_path)
    try:
        until_progress(first)
        assert is_locked(run) and holder(run)["pid"] == first.pid
        config_before = (run / "config.yaml").read_text()
        for args in (["train", "--resume", run], ["train", "--suite", "pong", *TINY, "--force", "--out", run],
                     ["baseline", "--game", "pong", "--force", "--out", run]):
            second = subprocess.run([sys.executable, "-m", "mtdqn.scripts", *map(str, args)], cwd=tmp_path,
                                    capture_output=True, text=True, env=source_env(WANDB_MODE="disabled"))
            assert second.returncode == 2
            (line,) = second.stderr.strip().splitlines()
            assert line.startswith(f"mtdqn: error: {run} is being written by process {first.pid} on ")
            assert "a run folder has one writer" in line
        assert (run / "config.yaml").read_text() == config_before and (run / "metrics.jsonl").is_file()
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel releases it, the file says who
        first.wait()
    assert not is_locked(run) and holder(run)["pid"] == first.pid
    resumed = start("--resume", run, "--progress-interval", "0.2", cwd=tmp_path)
    err = until_progress(resumed)
    resumed.send_signal(signal.SIGINT)  # checkpoints and ends; its lock file is emptied: a clean end
    err += resumed.communicate()[1]
    assert resumed.returncode == 0, err
    assert f"was locked by process {first.pid}" in err and "taking it over" in err
    assert holder(run) == {} and not is_locked(run)


def test_force_leaves_nothing_of_the_old_run(tmp_path):
    fresh, run = tmp_path / "fresh", tmp_path / "run"
    args = ["--suite", "pong,breakout", *TINY, "--frames-per-game", "800", "--checkpoint-interval", "400",
            "--conflict-interval", "20", "--track"]
    train(*args, "--out", fresh, cwd=tmp_path, wandb="offline")
    train(*args, "--out", run, cwd=tmp_path, wandb="offline")
    for derived in ("affinity.csv", "cosine.csv", "groups-affinity-k2.txt", "affinity.png"):  # what affinity/group write
        (run / derived).write_text("the old run's\n")
    proc = train(*args, "--seed", "1", "--force", "--out", run, cwd=tmp_path, wandb="offline")
    assert f"--force: replaced the run in {run}" in proc.stderr
    listing = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*")  # noqa: E731
                               if "wandb" not in p.parts and p.name != LOCK)
    assert listing(run) == listing(fresh)  # exactly what a fresh run writes
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    sync = [line for line in proc.stderr.splitlines() if "wandb sync" in line]
    assert sync and all(line.count("offline-run-") == 1 for line in sync)
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 1


def test_wandb_files_are_copies_as_each_segment_ended_and_checkpoints_upload_only_when_asked(tmp_path):
    run = tmp_path / "run"
    train("--suite", "pong", *TINY, "--frames-per-game", "800", "--track", "--out", run, cwd=tmp_path, wandb="offline")
    train("--resume", run, "--frames-per-game", "1600", cwd=tmp_path, wandb="offline")
    first, second = sorted((run / "wandb").glob("offline-run-*"))
    for segment, budget in ((first, 800), (second, 1600)):
        copy = segment / "files" / "metrics.jsonl"
        assert copy.is_file() and not copy.is_symlink()
        frames = [json.loads(r)["frames_per_game"] for r in copy.read_text().splitlines()]
        assert max(frames) == budget  # the first segment's copy stops where it ended
        assert wandb_records.artifacts(next(segment.glob("run-*.wandb")), kind="model") == []
    assert not (segment / "files" / "config.yaml").is_symlink()


def corrupt_newest(run: Path) -> Path:
    newest = checkpoint.latest(run)
    newest.write_bytes(newest.read_bytes()[:1000])  # as if the disk lost its tail
    return newest


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> Path:
    """pong,breakout at 800 frames per game: checkpoints and evaluations at 400 and 800."""
    root = tmp_path_factory.mktemp("two")
    train("--suite", "pong,breakout", *TINY, "--frames-per-game", "800", "--checkpoint-interval", "400",
          "--eval-interval", "400", "--keep-checkpoints", "0", "--out", root / "run", cwd=root)
    return root / "run"


def test_a_corrupt_newest_checkpoint_is_set_aside_with_the_discarded_attempts_evaluations(two_checkpoints, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    newest, old_eval = corrupt_newest(run), (run / "evals" / "frames_000000800" / "eval.json").read_text()
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "evaluate", run, "--episodes", "1",
                           "--max-episode-frames", "400", "--out", tmp_path / "e"], cwd=tmp_path, capture_output=True,
                          text=True, env=source_env(WANDB_MODE="disabled"))
    assert proc.returncode == 0, proc.stderr  # the newest intact checkpoint stands for the run
    assert f"skipping checkpoint '{newest}' is unreadable" in proc.stderr
    assert json.loads((tmp_path / "e" / "eval.json").read_text())["games"][0]["frames"] == 400
    train("--resume", run, "--frames-per-game", "1200", cwd=tmp_path)
    assert (run / "checkpoints" / "corrupt" / newest.name).stat().st_size == 1000
    assert (run / "evals" / "discarded" / "frames_000000800" / "eval.json").read_text() == old_eval
    assert [min(checkpoint.load(p)["frames"]) for p in checkpoint.all_checkpoints(run)] == [400, 800, 1200]
    evaluated = load(str(run))
    assert set(evaluated.hns) == {"pong", "breakout"} and set(evaluated.frames.values()) == {1200}


def test_a_study_runs_folder_named_a_plus_b_is_one_run_to_compare(two_checkpoints, tmp_path):
    run = tmp_path / "pong+breakout"  # how `mtdqn study` names a multi-game suite's run folders
    shutil.copytree(two_checkpoints, run)
    assert sorted(load_merged(str(run)).hns) == ["breakout", "pong"]


def test_an_out_under_a_file_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "train", "--suite", "pong", "--out", "notes.txt/run"],
                          cwd=tmp_path, capture_output=True, text=True, env=source_env(WANDB_MODE="disabled"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "mtdqn: error: --out 'notes.txt/run' lies under 'notes.txt', which is a file, not a folder"]


def test_compare_never_lets_a_one_game_evaluation_stand_for_the_run(two_checkpoints, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    report = json.loads((run / "evals" / "frames_000000800" / "eval.json").read_text())
    report["games"] = [dict(g, frames=900) for g in report["games"] if g["game"] == "pong"]
    one = run / "evals" / "frames_000000900-evaluate" / "episodes1-eps0.001-seed0-pong"
    one.mkdir(parents=True)
    (one / "eval.json").write_text(json.dumps(report))  # a later checkpoint, evaluated on one game only
    evaluated = load(str(run))
    assert sorted(evaluated.hns) == ["breakout", "pong"] and evaluated.source.endswith("frames_000000800/eval.json")
    shutil.rmtree(run / "evals" / "frames_000000800")
    shutil.rmtree(run / "evals" / "frames_000000400")
    with pytest.raises(Exception, match="has no evaluation of all its 2 games"):
        load(str(run))


def test_a_grouped_run_records_its_groups_and_resumes_from_anywhere(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "groups.txt").write_text("# from mtdqn group\npong;breakout\n")
    train("--suite", "pong,breakout", *TINY, "--frames-per-game", "400", "--sharing", "grouped", "--groups",
          "groups.txt", "--out", "run", cwd=tmp_path / "a")
    assert yaml.safe_load((tmp_path / "a" / "run" / "config.yaml").read_text())["groups"] == "pong;breakout"
    train("--resume", tmp_path / "a" / "run", "--frames-per-game", "800", cwd=tmp_path)
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "train", "--suite", "pong,breakout", "--sharing",
                           "grouped", "--groups", "missing/groups.txt"], cwd=tmp_path, capture_output=True, text=True,
                          env=source_env(WANDB_MODE="disabled"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "mtdqn: error: --groups file 'missing/groups.txt' does not exist (give a file from `mtdqn group`, or groups "
        "such as 'pong,breakout;qbert,frostbite')"]


def test_the_protocols_life_loss_terminals_are_recorded_as_applied():
    drq = parse(["--preset", "drq-eps", "--suite", "pong"])
    assert drq.protocol == "atari100k" and drq.life_loss_terminal and drq.life_loss_reset
    assert not parse(["--suite", "pong"]).life_loss_terminal


def test_epsilon_holds_still_while_a_resumed_run_refills(tmp_path):
    kw = dict(suite="pong", epsilon_decay_frames=2000, epsilon_end=0.1)
    Trainer(config(tmp_path / "a", **kw), tmp_path / "a").run()
    state = checkpoint.load(checkpoint.all_checkpoints(tmp_path / "a")[0])  # 1,200 frames: 400 into the decay
    at_checkpoint = 1.0 - 0.9 * (min(state["frames"]) - 800) / 2000
    t = Trainer(config(tmp_path / "a", **kw), tmp_path / "a", state=state)
    start = t.frames.copy()
    assert t.learning_starts == start[0] + 800 and t.epsilon() == pytest.approx([at_checkpoint])
    t.frames[:] = start + 799  # still refilling: no learning, no decay
    assert t.epsilon() == pytest.approx([at_checkpoint])
    t.frames[:] = start + 800 + 200  # learning again: the decay goes on from where it stopped
    assert t.epsilon() == pytest.approx([at_checkpoint - 0.9 * 200 / 2000])
    saved = t.state()  # a second resume without replay: the first refill stays uncounted
    t2 = Trainer(config(tmp_path / "a", **kw), tmp_path / "a", state=saved)
    t2.frames[:] = t2.frames + 300
    assert t2.epsilon() == pytest.approx([at_checkpoint - 0.9 * 200 / 2000])
    assert np.all(t2.frames >= t2.refill_from)


def test_a_refill_within_the_first_warm_up_pauses_nothing(tmp_path):
    kw = dict(suite="pong", epsilon_decay_frames=2000, epsilon_end=0.1, checkpoint_interval=400, frames_per_game=800)
    Trainer(config(tmp_path / "a", **kw), tmp_path / "a").run()
    state = checkpoint.load(checkpoint.all_checkpoints(tmp_path / "a")[0])  # 400 frames: before learning began
    t = Trainer(config(tmp_path / "a", **kw), tmp_path / "a", state=state)
    start = t.frames.copy()
    t.frames[:] = start + 800  # learning starts again here, and the decay with it
    assert t.learning_starts == start[0] + 800 and t.epsilon() == pytest.approx([1.0])
    t.frames[:] = start + 1000
    assert t.epsilon() == pytest.approx([1.0 - 0.9 * 200 / 2000])


def test_a_checkpoint_of_another_version_is_refused_not_set_aside(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    newer = tmp_path / "checkpoints" / "frames_000000800.pt"
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION + 1}, newer)
    with pytest.raises(checkpoint.CheckpointError, match="format version"):
        checkpoint.newest_intact(tmp_path, on_corrupt=set_aside_corrupt)
    assert newer.is_file() and not (tmp_path / "checkpoints" / "corrupt").exists()


def test_groups_of_minatar_ids_are_groups_not_a_path():
    games = ["minatar/breakout", "minatar/asterix", "minatar/freeway"]
    assert parse_groups("minatar/breakout,minatar/freeway;minatar/asterix", games) == [0, 1, 0]


def test_a_study_takes_a_folder_holding_only_a_lock_and_an_older_runs_groups_file(tmp_path):
    (tmp_path / "groups.txt").write_text("pong;breakout\n")
    done = tmp_path / "old"
    done.mkdir()
    (done / "config.yaml").write_text(yaml.safe_dump({"suite": "pong,breakout", "groups": str(tmp_path / "groups.txt"),
                                                      "sharing": "grouped", "frames_per_game": 800}))
    config = {"suite": "pong,breakout", "groups": "pong;breakout", "sharing": "grouped"}
    check_folder(Run("grouped", "pong,breakout", 0, done, {}, budget=800, config=config))
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / LOCK).write_text("")  # a train killed before its config.yaml
    check_folder(Run("grouped", "pong,breakout", 0, tmp_path / "locked", {}, budget=800, config=config))


def test_resume_of_an_sb3_baseline_folder_says_what_it_is(tmp_path):
    (tmp_path / "sb3").mkdir()
    (tmp_path / "sb3" / "config.yaml").write_text("algorithm: sb3-dqn\ngame: pong\n")
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "train", "--resume", "sb3"], cwd=tmp_path,
                          capture_output=True, text=True, env=source_env(WANDB_MODE="disabled"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "mtdqn: error: --resume 'sb3' is an SB3 baseline (mtdqn baseline), which does not checkpoint to resume: "
        "train it again with mtdqn baseline --out sb3 --force"]
