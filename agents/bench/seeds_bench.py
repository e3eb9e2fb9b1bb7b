"""`mtdqn bench`'s MinAtar rows: one seed's training loop against S seeds trained as one batch (core/seeds.py).

Both sides are the training loops' own hot paths (`Trainer.step`, `SeedBatchTrainer.step`) at the
minatar-dqn preset's settings (one env, an update of batch 32 per agent step, target synced every 1,000
updates), after the same fill of every replay, on this process's torch threads, alternating in blocks so
load drifts hit both. The cost per seed of the batch is set against separate processes by CPU time:
S separate processes cost S times one seed's loop (on one core each, or one after another), so

    cost per seed vs separate = (one seed's agent steps/s) / (the batch's seed-steps/s).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from mtdqn.agents.bench.timing import BLOCKS, iterations_for
from mtdqn.agents.training.config import TrainConfig, preset_options

NEVER = 10**12


def minatar_trainer(game: str, seed: int, fill_steps: int, threads: int, name: str):
    """A Trainer at the minatar-dqn preset's settings that learns after `fill_steps` and never logs, evaluates
    or checkpoints (its folder is never created)."""
    from mtdqn.agents.training.runner import Trainer

    options = preset_options("minatar-dqn") | dict(
        suite=game, seed=seed, threads=threads, frames_per_game=NEVER, learning_starts=fill_steps,
        replay_size=max(10_000, 2 * fill_steps), log_interval=NEVER, eval_interval=0, checkpoint_interval=NEVER,
        conflict_interval=0)
    return Trainer(TrainConfig(**options), Path(tempfile.gettempdir()) / f"mtdqn-bench-{os.getpid()}-{name}")


def seed_rates(game: str, seeds: int, fill_steps: int, steps: int, updates: int, threads: int = 1) -> dict:
    """Agent steps/s of one seed's loop and seed-steps/s of `seeds` seeds in one batch, `steps` agent steps per
    seed timed on each side; an update alone, timed `updates` times per side."""
    from mtdqn.agents.training.seed_runner import SeedBatchTrainer

    one = minatar_trainer(game, 0, fill_steps, threads, "alone")
    batch = SeedBatchTrainer([minatar_trainer(game, s, fill_steps, threads, f"seed{s}") for s in range(seeds)])
    try:
        timed, seconds, update_ms = _time(one, batch, fill_steps, steps, updates)
    finally:
        for t in [one, *batch.trainers]:
            t.actor.close()
    one_rate, batch_rate = timed / seconds["one"], timed * seeds / seconds["batch"]
    return {"game": game, "seeds": seeds, "threads": threads, "steps_per_seed": timed,
            "one_seed_steps_per_s": one_rate, "batch_seed_steps_per_s": batch_rate,
            "batch_steps_per_s_per_seed": batch_rate / seeds,
            "one_update_ms": update_ms["one"], "batch_update_ms": update_ms["batch"],
            "batch_update_ms_per_seed": update_ms["batch"] / seeds,
            "cost_per_seed_vs_separate": one_rate / batch_rate}


def _time(one, batch, fill_steps: int, steps: int, updates: int) -> tuple[int, dict, dict]:
    """Fill, warm up, then the two loops in alternating blocks (each step recorded as training records it),
    then updates alone; returns the steps timed per seed, seconds and ms per update of each side."""
    loop_one = one.start_loop(signals=False, bar=False)
    loops = [t.start_loop(signals=False, bar=False) for t in batch.trainers]
    every = list(range(len(batch.trainers)))

    def step_one(n: int) -> None:
        for _ in range(n):
            epsilon = one.epsilon()
            one.record(loop_one, *one.step(epsilon), epsilon)

    def step_batch(n: int) -> None:
        for _ in range(n):
            batch.step(every, loops)

    warm = fill_steps + 50  # the replays full to learning_starts, then the first (slow) updates untimed
    step_one(warm)
    step_batch(warm)
    seconds = {"one": 0.0, "batch": 0.0}
    per_block = max(1, iterations_for(steps, 1) // BLOCKS)
    for _ in range(BLOCKS):
        for side, run in (("one", step_one), ("batch", step_batch)):
            start = time.perf_counter()
            run(per_block)
            seconds[side] += time.perf_counter() - start
    update_ms = {"one": 0.0, "batch": 0.0}
    ready = one.replay.ready_games(one.cfg.batch_size)
    for _ in range(updates):
        sample = one.sample(ready)
        start = time.perf_counter()
        one.learner.update(sample)
        update_ms["one"] += 1000 * (time.perf_counter() - start) / updates
        samples = [t.sample(ready) for t in batch.trainers]
        start = time.perf_counter()
        batch.batch.update(samples)
        update_ms["batch"] += 1000 * (time.perf_counter() - start) / updates
    for loop in [loop_one, *loops]:
        loop.close()
    return per_block * BLOCKS, seconds, update_ms


def available() -> bool:
    """MinAtar is an optional extra (GPL-3.0): the rows are skipped without it."""
    try:
        import minatar  # noqa: F401
    except ImportError:
        return False
    return True
