"""What a run says while it trains: progress lines for runs whose output goes to a file, and the
per-game metrics gathered between two logs."""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict

import numpy as np
import torch

from mtdqn.envs import hns


class Progress:
    """One line on stderr every `interval` seconds of wall clock, for runs whose output goes to a file
    (tqdm's bar is off there): frames per game done / budget, agent steps/s, updates, epsilon, the
    latest return per game, ETA. `interval` None: no lines."""

    def __init__(self, trainer, interval: float | None):
        self.trainer, self.interval = trainer, interval
        self.start = self.last = time.perf_counter()
        self.start_frames = int(trainer.frames.min())
        self.last_total = int(trainer.frames.sum())

    def maybe_print(self, recent_return: list[float], epsilon: np.ndarray, force: bool = False) -> None:
        now = time.perf_counter()
        if self.interval is None or not (force or now - self.last >= self.interval):
            return
        t, total = self.trainer, int(self.trainer.frames.sum())
        print(progress_line(t.games, t.frames, t.cfg.frames_per_game, (total - self.last_total) / t.protocol.frameskip
                            / max(now - self.last, 1e-9), t.learner.updates, epsilon, recent_return,
                            (int(t.frames.min()) - self.start_frames) / max(now - self.start, 1e-9)),
              file=sys.stderr, flush=True)
        self.last, self.last_total = now, total


def progress_line(games: list[str], frames: np.ndarray, budget: int, steps_per_s: float, updates: int,
                  epsilon: np.ndarray, recent_return: list[float], frames_per_s: float) -> str:
    """'progress: 1,200/2,000 frames per game (60%), 95 agent steps/s, 150 updates, epsilon 0.52,
    return pong -21.0 breakout -, ETA 0:00:12' (frames per game: the slowest game's)."""
    done = int(frames.min())
    eps = "/".join(dict.fromkeys(f"{e:.3g}" for e in epsilon))
    returns = " ".join(f"{g} {'-' if math.isnan(r) else f'{r:g}'}" for g, r in zip(games, recent_return))
    left = max(budget - done, 0)
    eta = "0:00:00" if not left else "?" if frames_per_s <= 0 else clock(left / frames_per_s)
    return (f"progress: {done:,}/{budget:,} frames per game ({100 * min(done / budget, 1):.0f}%), "
            f"{steps_per_s:,.0f} agent steps/s, {updates:,} updates, epsilon {eps}, return {returns}, ETA {eta}")


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


PENALTIES = ("soft_penalty", "gate_sparsity", "gate_sharing")  # structure costs the learner reports


class MetricWindow:
    """Per-game metrics accumulated between two logs."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.returns = defaultdict(list)
        self.lengths = defaultdict(list)
        self.loss_sum = None
        self.loss_count = None
        self.q_sum = None
        self.norm_sum = None
        self.q = []
        self.grad_norm = []
        self.penalties = defaultdict(list)
        self.updates = 0

    def add_episode(self, game: int, ret: float, frames: int):
        self.returns[game].append(ret)
        self.lengths[game].append(frames)

    def add_update(self, metrics: dict):
        per_game = metrics["per_game_loss"]
        present = ~torch.isnan(per_game)
        if self.loss_sum is None:
            self.loss_sum = torch.zeros_like(per_game)
            self.loss_count = torch.zeros_like(per_game)
            self.q_sum = torch.zeros_like(per_game)
            self.norm_sum = torch.zeros_like(per_game)
        self.loss_sum += torch.nan_to_num(per_game)
        self.q_sum += torch.nan_to_num(metrics["per_game_q"])
        self.norm_sum += torch.nan_to_num(metrics["per_game_grad_norm"])
        self.loss_count += present
        self.q.append(metrics["q"])
        self.grad_norm.append(metrics["grad_norm"])
        for name in PENALTIES:
            if name in metrics:
                self.penalties[name].append(metrics[name])
        self.updates += 1

    def flush(self, games: list[str], epsilon: np.ndarray) -> dict:
        out = {}
        for g, name in enumerate(games):
            out[f"train/{name}/epsilon"] = float(epsilon[g])
            if self.returns[g]:
                out[f"train/{name}/episodic_return"] = float(np.mean(self.returns[g]))
                out[f"train/{name}/raw_std"] = float(np.std(self.returns[g]))
                normalized = hns(name, self.returns[g])
                if normalized is not None:
                    out[f"train/{name}/hns"] = float(np.mean(normalized))
                out[f"train/{name}/episode_frames"] = float(np.mean(self.lengths[g]))
        if self.updates:
            losses = (self.loss_sum / self.loss_count.clamp(min=1)).tolist()
            q = (self.q_sum / self.loss_count.clamp(min=1)).tolist()
            norms = (self.norm_sum / self.loss_count.clamp(min=1)).tolist()
            for g, name in enumerate(games):
                if self.loss_count[g] > 0:
                    out[f"train/{name}/td_loss"] = losses[g]
                    out[f"train/{name}/q_mean"] = q[g]  # mean Q(s, a) of the game's sampled transitions
                    out[f"train/{name}/grad_norm"] = norms[g]  # its gradient's norm before its clipping
            out["train/td_loss"] = float(np.mean([losses[g] for g in range(len(games)) if self.loss_count[g] > 0]))
            out["train/q_mean"] = float(torch.stack(self.q).mean())
            out["train/grad_norm"] = float(torch.stack(self.grad_norm).mean())
        for name, values in self.penalties.items():
            out[f"train/{name}"] = float(torch.stack(values).mean())
        self.reset()
        return out
