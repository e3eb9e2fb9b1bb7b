"""Never lose a run: kill -9 and resume, Ctrl-C, corrupt checkpoints, finished runs, determinism."""

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

from mtdqn.agents.core import checkpoint
from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.training.runner import Trainer
from mtdqn.scripts.train import parse, saved_config
from test_cli import source_env

SMALL = ["--suite", "pong,ms_pacman", "--envs-per-game", "1", "--learning-starts", "800", "--eval-interval", "0",
         "--eval-episodes", "1", "--max-episode-frames", "800", "--replay-size", "2000", "--log-interval", "400",
         "--target-update-period", "50"]


def start(*args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtdqn.scripts", "train", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=source_env(WANDB_MODE="disabled"))


def wait_for_checkpoint_line(proc: subprocess.Popen) -> bool:
    """Read stderr until the process reports a checkpoint; False if it ended first."""
    for line in proc.stderr:
        if line.startswith("checkpoint: "):
            return True
    return False


def checkpoint_frames(run: Path) -> list[int]:
    return [min(checkpoint.load(p)["frames"]) for p in checkpoint.all_checkpoints(run)]


def logged_frames(run: Path) -> list[int]:
    return [json.loads(line)["frames_per_game"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_at_random_points_then_resume_reaches_the_target(tmp_path):
    run, rng = tmp_path / "run", np.random.default_rng(0)
    args = [*SMALL, "--frames-per-game", "4000", "--checkpoint-interval", "400", "--keep-checkpoints", "0",
            "--save-replay", "--out", run]
    kills, seen = 0, []
    proc = start(*args, cwd=tmp_path)
    while True:
        if kills < 4 and wait_for_checkpoint_line(proc):
            try:  # let it run a random while longer: often into the next checkpoint write
                proc.wait(timeout=rng.uniform(0.0, 1.5))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                frames = checkpoint_frames(run)  # every checkpoint on disk loads
                assert frames == sorted(frames) and (not seen or frames[-1] >= seen[-1])
                seen.append(frames[-1])
                proc = start("--resume", run, cwd=tmp_path)
                continue
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        break
    assert kills >= 3
    assert min(checkpoint_frames(run)) <= seen[0] and checkpoint_frames(run)[-1] >= 4000
    frames = logged_frames(run)
    assert frames == sorted(frames) and frames[-1] >= 4000  # the history never goes backwards
    assert not list((run / "checkpoints").glob(".*.tmp"))
    assert len(list((run / "checkpoints").glob("*.replay.npz"))) == 1  # only the newest checkpoint's
    assert "| pong |" in out and "| ms_pacman |" in out
    assert (run / "command.txt").read_text().count("--resume") == kills


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    proc = start(*SMALL, "--frames-per-game", "1600", "--checkpoint-interval", "800", "--keep-checkpoints", "0",
                 "--out", root / "run", cwd=root)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return root / "run"


def test_resuming_a_finished_run_does_nothing(finished_run, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (finished_run / "checkpoints").iterdir()}
    proc = start("--resume", finished_run, cwd=tmp_path)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "already finished" in out and "nothing to do" in out
    assert {p.name: p.stat().st_mtime_ns for p in (finished_run / "checkpoints").iterdir()} == before


def test_a_run_killed_in_its_final_evaluation_only_evaluates_on_resume(finished_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    final = sorted((run / "evals").iterdir())[-1]
    shutil.rmtree(final)
    updates = checkpoint.load(checkpoint.latest(run))["learner"]["updates"]
    proc = start("--resume", run, cwd=tmp_path)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert (final / "eval.json").is_file() and "| pong |" in out
    assert checkpoint.load(checkpoint.latest(run))["learner"]["updates"] == updates  # no training
    # and no throughput of it: once, "progress: 1,600/1,600 ..., 0 agent steps/s" and "trained 0 frames per game"
    assert not [line for line in err.splitlines() if line.startswith(("progress: ", "trained "))], err


def test_a_resume_whose_refill_outlasts_the_budget_says_it_cannot_learn(finished_run, tmp_path):
    """Without a saved replay, a resume learns again only once --learning-starts (800) frames per game refill
    it: from 1,600 that is 2,400, and a budget of 2,000 ends before, without an update."""
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    state = checkpoint.load(checkpoint.latest(run))
    done = min(state["frames"])
    proc = start("--resume", run, "--frames-per-game", done + 400, cwd=tmp_path)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert [line for line in err.splitlines() if line.startswith("mtdqn: warning:")] == [
        f"mtdqn: warning: resumed at {done:,} frames per game without a saved replay, learning waits until the replay "
        f"refills --learning-starts 800 frames, at {done + 800:,}, and --frames-per-game {done + 400:,} stops before: "
        f"no gradient update will happen; raise --frames-per-game above {done + 800:,}"]
    assert checkpoint.load(checkpoint.latest(run))["learner"]["updates"] == state["learner"]["updates"]


@pytest.mark.parametrize("frames, budget, warned", [(1600, 2400, True), (1600, 2401, False), (1600, 1600, False),
                                                    (100, 800, False)])  # the last: `mtdqn train` warns of it itself
def test_the_refill_warning_comes_exactly_when_the_budget_ends_before_learning(capsys, frames, budget, warned):
    from mtdqn.agents.training.progress import warn_refill

    warn_refill(frames, 800, budget)
    assert capsys.readouterr().err.startswith(f"mtdqn: warning: resumed at {frames:,} frames") == warned


def test_resume_skips_a_corrupt_newest_checkpoint_and_cleans_temp_files(finished_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    ckpts = checkpoint.all_checkpoints(run)
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:1000])  # as if the disk lost its tail
    (run / "checkpoints" / f".{ckpts[-1].name}.x1y2.tmp").write_bytes(b"half a write")
    proc = start("--resume", run, cwd=tmp_path)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert f"skipping checkpoint '{ckpts[-1]}' is unreadable" in err
    assert f"resuming {run} from {ckpts[-2].name}" in err
    assert checkpoint_frames(run)[-1] >= 1600 and not list((run / "checkpoints").glob(".*.tmp"))


def test_resume_refuses_other_flags(finished_run, tmp_path):
    proc = start("--resume", finished_run, "--batch-size", "64", cwd=tmp_path)
    _, err = proc.communicate()
    assert proc.returncode == 2 and err.strip().splitlines() == [
        "mtdqn: error: --resume continues with the run's saved config; drop --batch-size (only --frames-per-game, --threads, --env-threads and the backend options may change)"]


def test_resume_may_change_the_threads_and_nothing_it_learns(finished_run):
    """Torch and env threads are the machine's share, not the agent's: a run resumed alone on 2 cores
    may take both; the rest of the saved config stays."""
    args = parse(["--resume", str(finished_run), "--threads", "2", "--env-threads", "1"])
    saved = yaml.safe_load((finished_run / "config.yaml").read_text())
    cfg = saved_config(finished_run, {"threads": args.threads, "env_threads": args.env_threads})
    assert (cfg.threads, cfg.env_threads) == (2, 1) and saved["threads"] == 1
    assert {k: v for k, v in cfg.to_dict().items() if k not in ("threads", "env_threads", "out")} == {
        k: v for k, v in saved.items() if k not in ("threads", "env_threads", "out")}


def test_sigint_checkpoints_and_exits_0_with_how_to_resume(tmp_path):
    run = tmp_path / "run"
    proc = start(*SMALL, "--frames-per-game", "40000", "--checkpoint-interval", "400", "--out", run, cwd=tmp_path)
    assert wait_for_checkpoint_line(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert f"resume with: mtdqn train --resume {run}" in err and "stopped by SIGINT" in err
    frames = checkpoint_frames(run)
    assert 400 <= frames[-1] < 40000 and logged_frames(run)[-1] <= frames[-1] + 400


def config(out: Path, **kw) -> TrainConfig:
    base = dict(suite="pong,ms_pacman", frames_per_game=2400, learning_starts=800, envs_per_game=1, eval_episodes=1,
                max_episode_frames=800, replay_size=2000, log_interval=400, eval_interval=0, checkpoint_interval=1200,
                target_update_period=50, keep_checkpoints=0, out=str(out))
    out.mkdir(parents=True, exist_ok=True)
    return TrainConfig(**base | kw)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_config_gives_identical_actions_losses_and_weights(tmp_path, precision):
    a, b = (Trainer(config(tmp_path / name, precision=precision), tmp_path / name) for name in ("a", "b"))
    for t in (a, b):
        t.run()
    # 1,600 frames per game after warm-up: 400 agent steps of each game, one update per 4 (the first waits a step)
    assert a.learner.updates == b.learner.updates == 99
    for x, y in zip(a.replay.games, b.replay.games):
        np.testing.assert_array_equal(x.action, y.action)
    strip = lambda run: [{k: v for k, v in json.loads(r).items() if not k.startswith("perf/")}  # noqa: E731
                         for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "a") == strip(tmp_path / "b")
    for k, v in a.learner.online.state_dict().items():
        assert torch.equal(v, b.learner.online.state_dict()[k]), k


def test_resume_restores_every_rng_and_two_resumes_continue_identically(tmp_path):
    Trainer(config(tmp_path / "a", save_replay=True, frames_per_game=1200), tmp_path / "a").run()
    (mid,) = checkpoint.all_checkpoints(tmp_path / "a")
    state = checkpoint.load(mid)
    saved_frames = np.load(tmp_path / "a" / "checkpoints" / f"{mid.stem}.replay.npz")["0/frames"]
    resumed = []
    for name in ("b", "c"):  # two resumes of the same checkpoint, budget raised to 2400
        shutil.copytree(tmp_path / "a", tmp_path / name)
        t = Trainer(config(tmp_path / name, save_replay=True), tmp_path / name, state=state)
        assert t.actor.rng.bit_generator.state == state["rng"]["exploration"]
        assert t.replay.rng.bit_generator.state == state["rng"]["replay"]
        assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])
        assert t.learning_starts == state["learning_starts"] == 800  # replay restored: no refill needed
        np.testing.assert_array_equal(t.replay.games[0].frames, saved_frames)
        t.run()
        resumed.append(t)
    b, c = resumed
    assert b.learner.updates == c.learner.updates > state["learner"]["updates"]
    for k, v in b.learner.online.state_dict().items():
        assert torch.equal(v, c.learner.online.state_dict()[k]), k


def test_resume_without_saved_replay_refills_before_learning(tmp_path):
    first = Trainer(config(tmp_path / "a"), tmp_path / "a")
    first.run()
    state = checkpoint.load(checkpoint.all_checkpoints(tmp_path / "a")[0])
    t = Trainer(config(tmp_path / "a"), tmp_path / "a", state=state)
    assert t.learning_starts == 1200 + 800 and len(t.replay) == 0


def test_resumed_offline_run_is_a_new_wandb_run_in_the_same_group(tmp_path):
    import wandb_records

    run = tmp_path / "run"
    env = source_env(WANDB_MODE="offline")
    for args in ([*SMALL, "--frames-per-game", "800", "--track", "--out", run], ["--resume", run, "--frames-per-game", "1200"]):
        proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", "train", *map(str, args)], cwd=tmp_path,
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
    runs = sorted((run / "wandb").glob("offline-run-*"))
    records = [wandb_records.run_record(next(r.glob("run-*.wandb"))) for r in runs]
    assert len(runs) == 2 and records[0].run_id != records[1].run_id  # a second id: _step and history stay whole
    assert records[0].run_group == records[1].run_group
    assert checkpoint_frames(run)[-1] >= 1200
