"""What a run says while it trains: the terminal's bar, progress lines for runs whose output goes to a
file, the line that ends a run, and the per-game metrics gathered between two logs.

Everything counts frames per game (the slowest game's) against the frames-per-game budget, as the
config does. The ETA comes from the recent rate only: the warm-up before learning starts steps several
times faster than learning does, and a whole-run average once said 7 s for a run that took minutes.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from mtdqn.envs import hns
from mtdqn.agents.core.episode_log import say

ETA_WINDOW = 10  # progress lines the ETA's rate spans: ten minutes at the default 60 s interval


class RecentRate:
    """Frames per game per second over the last `window` progress lines, back to no earlier than the first
    step that learns: the warm-up before it steps several times faster, and a whole-run average once
    promised 7 s for a run that took minutes. `mtdqn train` and `mtdqn baseline` take their ETA from it."""

    def __init__(self, window: int = ETA_WINDOW):
        self.points: deque[tuple[float, int]] = deque(maxlen=window + 1)  # (time, frames per game)

    def begin(self, now: float, frames: int) -> None:
        """The first step that learns: the rate's origin (later calls do nothing)."""
        if not self.points:
            self.points.append((now, frames))

    def add(self, now: float, frames: int) -> None:
        if self.points and now > self.points[-1][0]:
            self.points.append((now, frames))

    def per_second(self) -> float:
        if len(self.points) < 2:
            return 0.0
        (t0, f0), (t1, f1) = self.points[0], self.points[-1]
        return (f1 - f0) / (t1 - t0)


class Progress:
    """One line on stderr every `interval` seconds of wall clock, for runs whose output goes to a file
    (tqdm's bar is off there): frames per game done / budget, agent steps/s, updates, epsilon, the
    latest return per game, ETA. `interval` None: no such lines. Whatever the interval, the run's last
    call (`force`) also prints `summary_line`: its wall time and throughput, which nothing else keeps;
    a session that trained no frame (a resume that only owed its final evaluation) has neither to say.
    A line's agent steps/s count training time only: what runs `paused()` (an evaluation) is left out,
    or the line after a 5-minute evaluation would say "1 agent steps/s".

    The ETA's rate spans the last `window` lines, back to no earlier than the first step after warm-up
    (the trainer's `learning_starts`); until then the line says 'ETA ? (warm-up)'."""

    def __init__(self, trainer, interval: float | None, clock: Callable[[], float] = time.perf_counter,
                 window: int = ETA_WINDOW):
        self.trainer, self.interval, self.clock = trainer, interval, clock
        self.start = self.last = clock()
        self.start_frames = int(trainer.frames.min())
        self.start_total = self.last_total = int(trainer.frames.sum())
        self.rate = RecentRate(window)
        self.paused_s = 0.0  # seconds spent paused since the last line

    @contextmanager
    def paused(self):
        """Time spent inside (an evaluation) is not training time: the next line's rate leaves it out."""
        began = self.clock()
        try:
            yield
        finally:
            self.paused_s += self.clock() - began

    def maybe_print(self, recent_return: list[float], epsilon: np.ndarray, force: bool = False) -> None:
        now, t = self.clock(), self.trainer
        done = int(t.frames.min())
        if done >= t.learning_starts:
            self.rate.begin(now, done)
        total = int(t.frames.sum())
        if force:
            if total > self.last_total:  # else the last line already said it all (or nothing was trained)
                self.print_line(now, done, recent_return, epsilon)
            if total > self.start_total:
                say(summary_line(done - self.start_frames, (total - self.start_total) / t.protocol.frameskip,
                                 now - self.start))
        elif self.interval is not None and now - self.last >= self.interval:
            self.print_line(now, done, recent_return, epsilon)

    def print_line(self, now: float, done: int, recent_return: list[float], epsilon: np.ndarray) -> None:
        if self.interval is None:
            return
        t, total = self.trainer, int(self.trainer.frames.sum())
        self.rate.add(now, done)
        say(progress_line(t.games, t.frames, t.cfg.frames_per_game, (total - self.last_total) / t.protocol.frameskip
                          / max(now - self.last - self.paused_s, 1e-9), t.learner.updates, epsilon, recent_return,
                          self.rate.per_second(), warming_up=done < t.learning_starts))
        self.last, self.last_total, self.paused_s = now, total, 0.0


def warn_refill(frames: int, learning_starts: int, budget: int) -> None:
    """A run resumed at `frames` per game without its replay learns again only once the replay holds
    `learning_starts` frames per game anew: say so when that lies at or past the budget, as the session would
    otherwise end without a gradient update, silently (a budget at most --learning-starts itself is `mtdqn
    train`'s own warning)."""
    if frames < budget <= frames + learning_starts and budget > learning_starts:
        say(f"mtdqn: warning: resumed at {frames:,} frames per game without a saved replay, learning waits until the "
            f"replay refills --learning-starts {learning_starts:,} frames, at {frames + learning_starts:,}, and "
            f"--frames-per-game {budget:,} stops before: no gradient update will happen; raise --frames-per-game "
            f"above {frames + learning_starts:,}")


def progress_line(games: list[str], frames: np.ndarray, budget: int, steps_per_s: float, updates: int,
                  epsilon: np.ndarray, recent_return: list[float], frames_per_s: float,
                  warming_up: bool = False) -> str:
    """'progress: 1,200/2,000 frames per game (60%), 95 agent steps/s, 150 updates, epsilon 0.52,
    return pong -21.0 breakout -, ETA 0:00:12' (frames per game: the slowest game's; `frames_per_s`:
    the recent rate the ETA assumes, 0 if none is known yet)."""
    done = int(frames.min())
    eps = "/".join(dict.fromkeys(f"{e:.3g}" for e in epsilon))
    returns = " ".join(f"{g} {'-' if math.isnan(r) else f'{r:g}'}" for g, r in zip(games, recent_return))
    left = max(budget - done, 0)
    eta = ("0:00:00" if not left else "? (warm-up)" if warming_up else "?" if frames_per_s <= 0
           else clock(left / frames_per_s))
    return (f"progress: {done:,}/{budget:,} frames per game ({100 * min(done / budget, 1):.0f}%), "
            f"{steps_per_s:,.0f} agent steps/s, {updates:,} update{'s' * (updates != 1)}, epsilon {eps}, "
            f"return {returns}, ETA {eta}")


def summary_line(frames_per_game: int, agent_steps: float, seconds: float) -> str:
    """'trained 1,600 frames per game in 0:00:12 wall time (12.3 s): 130 frames per game/s, 65 agent steps/s'
    (this session's frames, warm-up and periodic evaluations included; agent steps: all games')."""
    s = max(seconds, 1e-9)
    return (f"trained {frames_per_game:,} frames per game in {clock(seconds)} wall time ({seconds:.1f} s): "
            f"{frames_per_game / s:,.0f} frames per game/s, {agent_steps / s:,.0f} agent steps/s")


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class FrameBar(tqdm):
    """The terminal's bar in frames per game (the slowest game's) of the frames-per-game budget, as the
    progress lines and the config count them; `advance_to` moves it to the trainer's frames. `enabled`
    False: no bar; otherwise tqdm's choice (none when stderr is not a terminal)."""

    def __init__(self, frames: np.ndarray, budget: int, enabled: bool = True, **kwargs):
        kwargs.setdefault("disable", None if enabled else True)
        kwargs.setdefault("desc", f"frames per game ({len(frames)} game{'s' if len(frames) != 1 else ''})")
        super().__init__(total=budget, initial=int(frames.min()), unit="frame", unit_scale=True, dynamic_ncols=True,
                         **kwargs)

    def advance_to(self, frames: np.ndarray) -> None:
        self.update(int(frames.min()) - self.n)


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
