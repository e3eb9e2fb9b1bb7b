"""Numerical faults stop learning with a diagnosis; W&B trouble never stops training."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtdqn.agents.core import checkpoint
from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.core.learner import DQNLearner, NonFiniteError
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.replay import Batch
from mtdqn.agents.training.runner import Trainer, TrainingStopped

import wandb_records


def one_batch(game: list[int], reward: float = 1.0) -> Batch:
    n = len(game)
    return Batch(obs=np.zeros((n, 4, 84, 84), np.uint8), action=np.zeros(n, np.int64),
                 rewards=np.full((n, 3), reward, np.float32), terminated=np.ones(n, bool), steps=np.ones(n, np.int64),
                 next_obs=np.zeros((n, 4, 84, 84), np.uint8), game=np.array(game))


def test_nan_in_a_head_names_that_game_and_changes_nothing():
    learner = DQNLearner(MultiHeadQNetwork([3, 4]))
    with torch.no_grad():
        learner.online.heads.bias[3] = float("nan")  # Q of game 1, action 0: the action in the batch
    before = {k: v.clone() for k, v in learner.online.state_dict().items()}
    with pytest.raises(NonFiniteError) as info:
        learner.update(one_batch([0, 0, 1, 1]))
    assert info.value.games == [1] and info.value.update == 1 and learner.updates == 0
    for k, v in learner.online.state_dict().items():
        assert torch.equal(v, before[k]) or torch.isnan(v).any(), k


def small(tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(**dict(suite="pong,ms_pacman", frames_per_game=1600, learning_starts=400, envs_per_game=1,
                              eval_episodes=1, max_episode_frames=800, replay_size=1000, log_interval=400,
                              eval_interval=0, checkpoint_interval=800, out=str(tmp_path)) | kw)


def poison_replay(trainer: Trainer, game: int) -> None:
    """After every insert, NaN rewards in one game's replay: its TD targets are NaN once sampled."""
    add = trainer.replay.add

    def poisoned(game_id, *args):
        add(game_id, *args)
        trainer.replay.games[game].reward[:] = np.nan

    trainer.replay.add = poisoned


def test_nan_stops_training_with_a_diagnostic_checkpoint(tmp_path):
    trainer = Trainer(small(tmp_path), tmp_path)
    poison_replay(trainer, game=1)
    with pytest.raises(TrainingStopped) as info:
        trainer.run()
    message = str(info.value)
    assert "non-finite TD loss" in message and "game(s) ms_pacman" in message and "at update 1 " in message
    (diag,) = (tmp_path / "checkpoints").glob("diagnostic_update_*.pt")
    state = checkpoint.load(diag)
    assert state["nonfinite"] == {"update": 1, "games": [1], "what": "TD loss (targets or Q-values)"}
    assert checkpoint.all_checkpoints(tmp_path) == []  # a resume never picks the diagnostic file


def test_skip_mode_counts_bad_batches_and_finishes(tmp_path):
    trainer = Trainer(small(tmp_path, on_nonfinite="skip", frames_per_game=1200), tmp_path)
    poison_replay(trainer, game=1)
    result = trainer.run()
    assert trainer.skipped_batches > 0 and trainer.learner.updates == 0  # every batch holds ms_pacman
    assert result["report"] is not None


def test_cli_exits_3_naming_the_game(tmp_path):
    # a learning rate so large that the loss overflows to inf within a few updates
    proc = subprocess.run(
        [sys.executable, "-m", "mtdqn.scripts", "train", "--suite", "pong", "--frames-per-game", "4000", "--envs-per-game",
         "1", "--learning-starts", "400", "--learning-rate", "1e30", "--no-reward-clip", "--eval-interval", "0",
         "--max-episode-frames", "800", "--out", tmp_path / "run"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 3, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mtdqn: error: non-finite") and "game(s) pong" in last
    assert list((tmp_path / "run" / "checkpoints").glob("diagnostic_update_*.pt"))


def test_unreachable_wandb_falls_back_to_offline_and_never_stores_the_key(tmp_path):
    key = "k" * 40
    env = {**os.environ, "WANDB_API_KEY": key, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_INIT_TIMEOUT": "5"}
    env.pop("WANDB_MODE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mtdqn.scripts", "train", "--suite", "pong", "--frames-per-game", "800", "--envs-per-game",
         "1", "--learning-starts", "400", "--eval-interval", "0", "--eval-episodes", "1", "--max-episode-frames", "800",
         "--track", "--out", tmp_path / "run"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "mtdqn: warning: W&B online init failed" in proc.stderr and "trying offline" in proc.stderr
    history = wandb_records.history(wandb_records.run_file(tmp_path / "run" / "wandb"))
    assert any("eval/pong/hns" in row for row in history)
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
