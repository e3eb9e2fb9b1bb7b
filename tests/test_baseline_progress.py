"""`mtdqn baseline` while it trains: progress lines in frames, metrics to metrics.jsonl and (--track) to W&B,
read back from the offline run, and a Ctrl-C that ends it within a second, in one line, leaving nothing."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest

import wandb_records
from test_cli import source_env

SMALL = ["--game", "breakout", "--frames-per-game", "3000", "--learning-starts", "800", "--buffer-size", "1000",
         "--eval-episodes", "1", "--max-episode-frames", "1000", "--log-interval", "1000", "--progress-interval", "0"]
LINE = re.compile(r"progress: [\d,]+/3,000 frames per game \(\d+%\), [\d,]+ agent steps/s, [\d,]+ updates?, "
                  r"epsilon [\d.e-]+, return breakout (-|-?[\d.]+), ETA (\d+:\d\d:\d\d|\? \(warm-up\)|\?)")


def baseline(*args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtdqn.scripts", "baseline", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=source_env(WANDB_MODE="offline"))


def test_progress_in_frames_and_tracked_values_read_back_from_wandb(tmp_path):
    run = tmp_path / "sb3"
    proc = baseline(*SMALL, "--track", "--wandb-project", "mtdqn-test", "--wandb-tags", "baseline,seed:0", "--out", run,
                    cwd=tmp_path)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert lines[1] == "SB3 DQN on breakout: 3,000 frames, 4 envs; Ctrl-C stops it (a baseline does not resume)"
    progress = [l for l in lines if l.startswith("progress:")]
    assert len(progress) >= 10 and all(LINE.fullmatch(l) for l in progress), progress[:3]
    assert progress[0].startswith("progress: 16/3,000 frames per game (1%)") and " epsilon 1, " in progress[0]
    assert progress[0].endswith("ETA ? (warm-up)")  # before 800 frames: no learning rate to project from yet
    assert re.search(r"ETA \d+:\d\d:\d\d$", progress[-1])
    local = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["frames_per_game"] for r in local] == [1008, 2000, 3008, 3008, 3008]
    assert [sorted(r) for r in local[:3]] == [["frames_per_game", "perf/frames_per_second", "train/breakout/epsilon",
                                               "train/breakout/td_loss", "train/updates"]] * 3
    # an update per step of the 4 envs past 200 agent steps (800 frames), logged before the step's own update:
    # at 1,008 frames (252 steps) those at 204, 208, ..., 248 steps
    assert [r["train/updates"] for r in local[:3]] == [(248 - 204) // 4 + 1, (496 - 204) // 4 + 1, (748 - 204) // 4 + 1]
    evaluation = json.loads((run / "evals" / "frames_000003008" / "eval.json").read_text())["games"][0]
    assert local[4]["eval/breakout/raw_mean"] == evaluation["raw_mean"]
    wandb_file = wandb_records.run_file(run / "wandb")
    logged = [{k: v for k, v in row.items() if not k.startswith("_")} for row in wandb_records.history(wandb_file)]
    media = [row for row in logged if any(k.startswith("eval/table") for k in row)]  # the table and chart upload
    assert len(media) == 1 and "eval/hns_chart" in {k.split("/path")[0] for k in media[0]}
    assert [row for row in logged if row not in media] == local  # every local row, value for value
    config = wandb_records.config(wandb_file)
    assert (config["algorithm"], config["game"], config["target_update_period"]) == ("sb3-dqn", "breakout", 250)
    assert "progress_interval" not in config and "force" not in config
    record = wandb_records.run_record(wandb_file)
    assert record.job_type == "baseline" and sorted(record.tags) == ["baseline", "seed:0"]
    assert any(name.endswith("-checkpoint") for name in wandb_records.artifacts(wandb_file, "model"))
    assert out.startswith("| game | frames | episodes |")


@pytest.mark.parametrize("existing", [False, True])
def test_ctrl_c_ends_it_within_a_second_in_one_line_leaving_nothing(tmp_path, existing):
    run = tmp_path / "sb3"
    if existing:  # an --out folder the user made stays, with what was in it before
        run.mkdir()
        (run / "notes.txt").write_text("mine")
    proc = baseline(*SMALL[:3], "1000000", *SMALL[4:], "--track", "--out", run, cwd=tmp_path)
    for line in proc.stderr:  # learning has begun: SB3 is in its update loop
        if line.startswith("progress:") and " 0 updates" not in line:
            break
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    elapsed = time.perf_counter() - sent
    rest = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert code == 130 and elapsed < 1.0, (code, elapsed, rest[-2000:])
    assert rest.splitlines()[-1] == f"mtdqn: interrupted before training finished: nothing kept in {run}"
    assert not [l for l in rest.splitlines() if not l.startswith("progress:")][:-1]  # no traceback
    if existing:
        assert [p.name for p in run.iterdir()] == ["notes.txt"]
    else:
        assert not run.exists()


def test_a_ctrl_c_after_the_checkpoint_keeps_it(tmp_path, monkeypatch):
    from mtdqn.scripts import baseline as script

    said = []
    monkeypatch.setattr(script, "exit_interrupted", lambda message: said.append(message) or sys.exit(130))
    ckpt = tmp_path / "sb3" / "checkpoints" / "frames_000003008.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    with pytest.raises(SystemExit):
        script.interrupted(tmp_path / "sb3", None, {"started": True, "checkpoint": ckpt})
    assert said == [f"interrupted during the final evaluation: checkpoint kept, evaluate it with mtdqn evaluate {ckpt}"]
    assert ckpt.is_file()
    with pytest.raises(SystemExit):  # Ctrl-C before the folder was touched (e.g. while torch loads)
        script.interrupted(tmp_path / "sb3", {"checkpoints"}, {})
    assert said[-1] == f"interrupted before anything was written to {tmp_path / 'sb3'}" and ckpt.is_file()
