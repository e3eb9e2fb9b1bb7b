"""The single-task reference: SB3's `DQN("CnnPolicy")` on one game, scored by our evaluation.

SB3 trains on our env (envs/sb3.py: same ale-py emulator, preprocessing and protocol). Its Q-network
is Nature-DQN, the architecture of our one-game network, so its weights are copied into a
`MultiHeadQNetwork` checkpoint and `mtdqn evaluate` / `mtdqn compare` treat it like any run of ours.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, fields

import numpy as np
import torch

from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.envs import FRAMESKIP


@dataclass
class BaselineSettings:
    """SB3 DQN at Nature-DQN settings (Mnih et al. 2015 as SB3 users run it), in `mtdqn train`'s units:
    frames per game before learning, updates between target syncs (SB3 counts both in agent steps)."""

    buffer_size: int = 100_000
    """SB3 replay size, transitions."""
    learning_starts: int = 20_000
    """Frames (4 per agent step) before learning starts: the unit and default of `mtdqn train --learning-starts`."""
    target_update_period: int = 250
    """Gradient updates between target-network syncs (the unit of `mtdqn train --target-update-period`; SB3
    syncs every this x --train-frequency agent steps). 250 (1,000 agent steps) is the RL Zoo's SB3 DQN on
    Atari, the baseline this command reproduces; `mtdqn train` defaults to 2,000 updates."""
    batch_size: int = 32
    """Transitions per update."""
    train_frequency: int = 4
    """Agent steps per gradient update."""
    learning_rate: float = 1e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    exploration_fraction: float = 0.1
    """Fraction of training over which epsilon decays from 1 to --exploration-final-eps."""
    exploration_final_eps: float = 0.01
    """Final exploration rate."""

    def to_dict(self) -> dict:
        """The settings alone (also when called on a subclass carrying more options)."""
        return {f.name: getattr(self, f.name) for f in fields(BaselineSettings)}


def sb3_dqn(env, settings: BaselineSettings, seed: int, device: str = "cpu"):
    from stable_baselines3 import DQN

    from mtdqn.agents.bench.benchmark import sb3_train_freq

    train_freq, gradient_steps = sb3_train_freq(settings.train_frequency, env.num_envs)
    return DQN("CnnPolicy", env, learning_rate=settings.learning_rate, buffer_size=settings.buffer_size,
               learning_starts=settings.learning_starts // FRAMESKIP, batch_size=settings.batch_size,
               gamma=settings.gamma,
               train_freq=(train_freq, "step"), gradient_steps=gradient_steps,
               target_update_interval=settings.target_update_period * settings.train_frequency,
               exploration_fraction=settings.exploration_fraction,
               exploration_final_eps=settings.exploration_final_eps,
               optimize_memory_usage=False, device=device, seed=seed, verbose=0)


def to_network(model) -> MultiHeadQNetwork:
    """SB3's Nature CNN + linear Q layer as our one-game network (same layers, same input scaling)."""
    q = model.policy.q_net
    network = MultiHeadQNetwork([int(model.action_space.n)])
    cnn, linear = q.features_extractor.cnn, q.features_extractor.linear
    ours = network.torsos[0].net
    pairs = [(ours[0], cnn[0]), (ours[2], cnn[2]), (ours[4], cnn[4]), (ours[7], linear[0]), (network.heads, q.q_net[0])]
    with torch.no_grad():
        for mine, theirs in pairs:
            if mine.weight.shape != theirs.weight.shape:
                raise ValueError(f"SB3 layer {theirs} does not match ours {mine}: not a Nature-DQN CnnPolicy")
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
    return network


class EpisodeLog:
    """SB3 callback pieces: episodic returns (raw game scores from VecMonitor) for our run log."""

    def __init__(self):
        self.returns: list[float] = []

    def collect(self, infos) -> None:
        self.returns += [float(i["episode"]["r"]) for i in infos if "episode" in i]

    def flush(self) -> float | None:
        out = float(np.mean(self.returns)) if self.returns else None
        self.returns = []
        return out


def frames_of(model) -> int:
    return int(model.num_timesteps) * FRAMESKIP


def progress_callback(game: str, budget: int, learning_starts: int, tracker, log_interval: int,
                      progress_interval: float | None):
    """The SB3 callback that makes `mtdqn baseline` say what it does while it trains, in `mtdqn train`'s units
    (frames of the one game): a tqdm bar on a terminal; where stderr is a file (the bar is off there) a
    progress line every `progress_interval` seconds, its ETA from the recent rate (progress.RecentRate, as
    `mtdqn train`); every `log_interval` frames a metrics row for the tracker (metrics.jsonl,
    and W&B with --track) under train's keys."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    from mtdqn.agents.training.progress import RecentRate, progress_line
    from mtdqn.envs import hns, reference_scores

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(total=budget, unit="frame", unit_scale=True, dynamic_ncols=True, disable=None, desc=game)
            self.episodes, self.latest = EpisodeLog(), math.nan
            self.start = self.last_line = time.perf_counter()
            self.last_frames, self.next_log = 0, log_interval
            self.rate = RecentRate()

        def _on_step(self) -> bool:
            self.episodes.collect(self.locals["infos"])
            if self.episodes.returns:
                self.latest = self.episodes.returns[-1]
            frames, now = frames_of(self.model), time.perf_counter()
            self.bar.update(min(frames, budget) - self.bar.n)
            if frames >= learning_starts:
                self.rate.begin(now, frames)
            if progress_interval is not None and now - self.last_line >= progress_interval:
                steps_per_s = (frames - self.last_frames) / FRAMESKIP / max(now - self.last_line, 1e-9)
                self.rate.add(now, frames)
                print(progress_line([game], np.array([frames]), budget, steps_per_s, self.model._n_updates,
                                    np.array([self.epsilon()]), [self.latest], self.rate.per_second(),
                                    warming_up=frames < learning_starts), file=sys.stderr, flush=True)
                self.last_line, self.last_frames = now, frames
            if frames >= self.next_log:
                tracker.log(self.metrics(frames, now), frames)
                self.next_log = (frames // log_interval + 1) * log_interval
            return True

        def metrics(self, frames: int, now: float) -> dict:
            ret = self.episodes.flush()
            out = {"perf/frames_per_second": frames / max(now - self.start, 1e-9), "train/updates": self.model._n_updates,
                   f"train/{game}/epsilon": self.epsilon()}
            loss = self.model.logger.name_to_value.get("train/loss")  # SB3's loss of its latest update
            if loss is not None and self.model._n_updates:
                out[f"train/{game}/td_loss"] = float(loss)
            if ret is not None:
                out[f"train/{game}/episodic_return"] = ret
                if game in reference_scores():
                    out[f"train/{game}/hns"] = float(hns(game, ret))
            return out

        def epsilon(self) -> float:
            """The rate of the step just taken (SB3 sets model.exploration_rate only after the callbacks)."""
            return float(self.model.exploration_schedule(self.model._current_progress_remaining))

        def _on_training_end(self) -> None:
            self.bar.close()

    return Progress()
