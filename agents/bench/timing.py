"""Timing primitives of `mtdqn bench`: a timed stretch of agent steps (Rate), our training loop's own
hot path driven for N iterations, raw ale-py stepping of the same envs, and the blocks two sides of a
comparison alternate in, so drifts in machine load (another job, a throttled core) hit both alike.
Agent steps count vector steps x envs (SB3's `num_timesteps`), for every measurement."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.training.runner import Trainer

BLOCKS = 5  # each comparison alternates its two sides in this many blocks, so load drifts hit both


@dataclass
class Rate:
    """A timed stretch of agent steps; `phases_ms` splits our loop's time per iteration."""

    steps: int
    seconds: float
    envs: int
    updates: int = 0
    phases_ms: dict[str, float] = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    def to_dict(self) -> dict:
        return asdict(self) | {"steps_per_s": self.steps_per_s}


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (ru_maxrss is KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- our side ------------------------------------------------------------------------------------
def build_trainer(games: list[str], envs_per_game: int, protocol: str = "machado", threads: int = 1,
                  learning_starts: int | None = None, replay_size: int = 100_000, seed: int = 0,
                  precision: str = "fp32") -> Trainer:
    """A Trainer for `games` at training defaults (batch 32, one update per 4 agent steps...).

    learning_starts=None never learns (acting only). The run folder is never created: only logs,
    evaluations and checkpoints write there, and the benchmark does none of them.
    """
    never = 10**12
    cfg = TrainConfig(suite=",".join(games), envs_per_game=envs_per_game, protocol=protocol, threads=threads,
                      seed=seed, replay_size=replay_size, frames_per_game=never, conflict_interval=0,
                      precision=precision,
                      learning_starts=never if learning_starts is None else learning_starts)
    return Trainer(cfg, Path(tempfile.gettempdir()) / f"mtdqn-bench-{os.getpid()}")


def loop(t: Trainer, iterations: int) -> Rate:
    """`iterations` of `Trainer.step`, the training loop's own hot path: act, learn what is owed, recv, store."""
    G, E = len(t.games), t.cfg.envs_per_game
    phases: dict[str, float] = {}
    updates = t.learner.updates
    start = time.perf_counter()
    for _ in range(iterations):
        t.step(t.epsilon(), phases)
    seconds = time.perf_counter() - start
    n = max(iterations, 1)
    return Rate(iterations * G * E, seconds, G * E, t.learner.updates - updates,
                {k: 1000 * v / n for k, v in phases.items()})


def iterations_for(steps: int, envs: int) -> int:
    return max(1, -(-steps // envs))


def raw_stepper(envs: list, seed: int = 0):
    """A function timing `iterations` of ale-py stepping alone on `envs`: random actions, sent to
    all and then received from all as the actor does; the most our acting loop could reach."""
    rng = np.random.default_rng(seed)
    pool = 64  # pre-drawn actions, so the loop times the emulators and not the RNG
    actions = [rng.integers(0, int(e.single_action_space.n), (pool, e.num_envs)) for e in envs]
    total = sum(e.num_envs for e in envs)

    def step(iterations: int) -> Rate:
        start = time.perf_counter()
        for k in range(iterations):
            for env, a in zip(envs, actions):
                env.send(a[k % pool])
            for env in envs:
                env.recv()
        return Rate(iterations * total, time.perf_counter() - start, total)

    return step


def merge(rates: list[Rate]) -> Rate:
    """Blocks of one measurement as one Rate (phases weighted by each block's share of steps)."""
    steps = sum(r.steps for r in rates)
    phases = {k: sum(r.phases_ms[k] * r.steps for r in rates) / steps for k in rates[0].phases_ms}
    return Rate(steps, sum(r.seconds for r in rates), rates[0].envs, sum(r.updates for r in rates), phases)


def split_blocks(iterations: int) -> list[int]:
    """`iterations` split into BLOCKS nearly equal parts (none empty)."""
    n = min(BLOCKS, iterations)
    return [iterations // n + (i < iterations % n) for i in range(n)]
