"""End to end through the command line: train 2 real games with W&B offline, evaluate, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import wandb_records

GAMES = "pong,ms_pacman"
TRAIN = ["--suite", GAMES, "--frames-per-game", "6000", "--learning-starts", "2000", "--envs-per-game", "2",
         "--eval-interval", "4000", "--eval-episodes", "2", "--checkpoint-interval", "4000", "--log-interval", "1000",
         "--max-episode-frames", "2000", "--replay-size", "4000", "--target-update-period", "100", "--seed", "1",
         "--conflict-interval", "100"]




def source_env(**extra) -> dict:
    """The environment for a subprocess: this one's, where `mtdqn` is the installed package
    (`pip install -e .` of this checkout), plus `extra`."""
    return {**os.environ, **extra}


def mtdqn(*args, cwd: Path, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=source_env(WANDB_MODE="offline"), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """`mtdqn --help | head -1`: the pipe is closed before mtdqn writes (its interpreter has not even
    started), so every write fails with EPIPE; mtdqn stops quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "mtdqn.scripts", "--help"], cwd=tmp_path, env=source_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 1 and proc.stderr.read() == b""
    proc.stderr.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    mtdqn("train", *TRAIN, "--track", "--wandb-checkpoints", "--video", "--wandb-project", "mtdqn-test", "--out",
          root / "run", cwd=root)
    return root / "run"


def test_run_folder_holds_config_command_checkpoints_and_metrics(run):
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["suite"] == GAMES and config["frames_per_game"] == 6000 and config["envs_per_game"] == 2
    assert (run / "command.txt").read_text().startswith("mtdqn train --suite pong,ms_pacman")
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 2 and checkpoints[0].startswith("frames_00000400")
    assert checkpoints[1] >= "frames_000006000.pt"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    for game in ("pong", "ms_pacman"):
        for key in ("episodic_return", "td_loss", "epsilon"):
            assert f"train/{game}/{key}" in keys
        assert f"eval/{game}/hns" in keys
    assert {"eval/hns_iqm", "eval/hns_median", "eval/hns_mean", "perf/frames_per_second"} <= keys
    frames = [r["frames_per_game"] for r in rows]
    assert frames == sorted(frames) and frames[-1] >= 6000
    assert (run / "learning_curves.png").stat().st_size > 5000  # HNS against frames, redrawn at each evaluation
    evals = sorted((run / "evals").iterdir())
    assert len(evals) == 2 and all((e / "eval.json").is_file() and (e / "hns.png").is_file() for e in evals)
    assert all((e / "videos" / f"{g}.mp4").stat().st_size > 1000 for e in evals for g in ("pong", "ms_pacman"))


def test_offline_wandb_run_holds_the_per_game_metrics(run):
    path = wandb_records.run_file(run / "wandb")
    history = wandb_records.history(path)
    keys = set().union(*history)
    for game in ("pong", "ms_pacman"):
        assert {f"train/{game}/episodic_return", f"train/{game}/td_loss", f"eval/{game}/hns"} <= keys
    assert {"eval/hns_iqm", "eval/hns_median", "eval/hns_mean", "perf/frames_per_second"} <= keys
    assert any(k.startswith("eval/table") for k in keys) and any(k.startswith("eval/hns_chart") for k in keys)
    assert any(k.startswith("eval/learning_curves") for k in keys)
    assert any(k.startswith("eval/pong/video") for k in keys) and any(k.startswith("eval/ms_pacman/video") for k in keys)
    iqm = [h["eval/hns_iqm"] for h in history if "eval/hns_iqm" in h]
    local = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert iqm == pytest.approx([r["eval/hns_iqm"] for r in local if "eval/hns_iqm" in r])
    assert wandb_records.config(path)["suite"] == GAMES
    # gradient conflict and affinity: scalars per pair and heatmap images
    assert {"conflict/cosine_mean", "conflict/cosine/pong~ms_pacman", "conflict/affinity/ms_pacman->pong"} <= keys
    assert any(k.startswith("conflict/cosine_heatmap") for k in keys)
    assert any(k.startswith("conflict/affinity_heatmap") for k in keys)
    cosines = [h["conflict/cosine/pong~ms_pacman"] for h in history if "conflict/cosine/pong~ms_pacman" in h]
    assert cosines and all(-1 <= c <= 1 for c in cosines)
    rows = (run / "conflict.csv").read_text().splitlines()
    assert rows[0] == "frames_per_game,update,metric,source,target,value" and len(rows) == 1 + 8 * len(cosines)
    assert len(wandb_records.artifacts(path, kind="model")) == 2  # one version per checkpoint


def test_evaluate_writes_per_game_table_chart_and_video(run, tmp_path):
    ckpt = sorted((run / "checkpoints").glob("*.pt"))[-1]
    proc = mtdqn("evaluate", ckpt, "--episodes", "3", "--games", "ms_pacman", "--video",
                 "--max-episode-frames", "2000", "--out", tmp_path / "eval", cwd=tmp_path)
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    (record,) = report["games"]
    assert record["game"] == "ms_pacman" and record["episodes"] == 3 and record["frames"] >= 6000
    assert {"raw_mean", "raw_std", "hns"} <= set(record)
    assert record["hns"] == pytest.approx((record["raw_mean"] - 307.3) / (6951.6 - 307.3))
    assert report["protocol"]["name"] == "machado" and report["protocol"]["repeat_action_probability"] == 0.25
    assert report["protocol"]["max_frames_per_episode"] == 2000
    assert report["aggregate"]["games_with_reference"] == 1 and "iqm" in report["aggregate"]
    for name in ("eval.csv", "eval.md", "hns.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    assert (tmp_path / "eval" / "videos" / "ms_pacman.mp4").stat().st_size > 1000
    assert "| ms_pacman |" in proc.stdout and "| iqm |" in proc.stdout


def one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtdqn: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("args, needles", [
    (["--suite", "pong,brekout"], ["'brekout'", "breakout"]),
    (["--suite", "pong,pong"], ["listed twice"]),
    (["--frames-per-game", "0"], ["--frames-per-game", "positive", "0"]),
    (["--learning-rate", "-1"], ["--learning-rate", "-1"]),
    (["--device", "cuda:7"], ["cuda:7"]),
    (["--device", "tpu"], ["'tpu'"]),
    (["--frames-per-game", "abc"], ["--frames-per-game", "'abc'"]),
    (["--framez", "3"], ["--framez"]),
    (["--protocol", "nature"], ["'nature'", "machado", "classic"]),
    (["--precision", "fp16"], ["'fp16'", "fp32", "bf16"]),
    (["--replay-size", "-5"], ["--replay-size", "-5"]),
    (["--gamma", "1.5"], ["--gamma", "[0, 1]"]),
])
def test_bad_train_input_is_one_line_exit_2_and_creates_nothing(tmp_path, args, needles):
    one_line_error(mtdqn("train", *args, "--out", tmp_path / "run", cwd=tmp_path, check=False), *needles)
    assert not (tmp_path / "run").exists()


def test_yaml_typos_and_wrong_types_are_refused(tmp_path):
    (tmp_path / "typo.yaml").write_text("suite: pong\nlearning_rat: 0.001\n")
    one_line_error(mtdqn("train", "--config", "typo.yaml", "--out", "r", cwd=tmp_path, check=False),
                   "learning_rat", "learning_rate")
    (tmp_path / "type.yaml").write_text("frames_per_game: lots\n")
    one_line_error(mtdqn("train", "--config", "type.yaml", "--out", "r", cwd=tmp_path, check=False),
                   "frames_per_game", "'lots'", "int")
    assert not (tmp_path / "r").exists()


def test_flags_override_the_yaml_file(tmp_path):
    (tmp_path / "c.yaml").write_text("suite: pong\nframes-per-game: 12345\nbatch_size: 64\n")
    from mtdqn.scripts.train import parse

    args = parse(["--config", str(tmp_path / "c.yaml"), "--batch-size", "16"])
    assert (args.suite, args.frames_per_game, args.batch_size) == ("pong", 12345, 16)


def test_an_existing_run_is_not_overwritten(run, tmp_path):
    before = (run / "config.yaml").read_text()
    proc = mtdqn("train", "--suite", "pong", "--out", run, cwd=tmp_path, check=False)
    one_line_error(proc, str(run), "--force")
    assert (run / "config.yaml").read_text() == before


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("precious")
    one_line_error(mtdqn("train", "--suite", "pong", "--out", "taken", cwd=tmp_path, check=False), "'taken'", "file")
    assert (tmp_path / "taken").read_text() == "precious"


def test_a_checkpoint_of_another_architecture_is_refused(run, tmp_path):
    import torch

    from mtdqn.agents.core import checkpoint

    state = checkpoint.load(sorted((run / "checkpoints").glob("*.pt"))[-1])
    state["action_counts"] = [7, 3]  # heads of other sizes than the saved weights
    checkpoint.save(state, tmp_path / "inconsistent.pt")  # the network spec still says [6, 9]
    one_line_error(mtdqn("evaluate", tmp_path / "inconsistent.pt", cwd=tmp_path, check=False), "does not fit")
    state["network"]["action_counts"] = [7, 3]
    checkpoint.save(state, tmp_path / "other.pt")
    one_line_error(mtdqn("evaluate", tmp_path / "other.pt", cwd=tmp_path, check=False), "does not fit")
    torch.save({"format": "mtdqn-checkpoint", "version": 99}, tmp_path / "future.pt")
    one_line_error(mtdqn("evaluate", tmp_path / "future.pt", cwd=tmp_path, check=False), "version 99")
    (tmp_path / "empty_run").mkdir()
    one_line_error(mtdqn("evaluate", tmp_path / "empty_run", cwd=tmp_path, check=False), "no checkpoints")


def test_bad_evaluate_input(run, tmp_path):
    ckpt = sorted((run / "checkpoints").glob("*.pt"))[-1]
    one_line_error(mtdqn("evaluate", ckpt, "--games", "breakout", cwd=tmp_path, check=False),
                   "'breakout'", "pong,ms_pacman")
    one_line_error(mtdqn("evaluate", tmp_path / "missing.pt", cwd=tmp_path, check=False), "does not exist")
    one_line_error(mtdqn("evaluate", ckpt, "--episodes", "0", cwd=tmp_path, check=False), "--episodes")
    assert not (run / "evals" / f"{ckpt.stem}-evaluate").exists()
