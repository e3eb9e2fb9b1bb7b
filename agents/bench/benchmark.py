"""Throughput and memory measurements behind `mtdqn bench`, each against the reference it must beat.

Everything runs in one process, and the two sides of each comparison alternate in blocks
(timing.py), so drifts in machine load hit both alike. Our side is built by `training.runner.Trainer`
from a `TrainConfig` and driven by `Trainer.step`, the training loop's own per-iteration hot path
(without `run()`'s logs, evaluations and checkpoints).
"""

from __future__ import annotations

import gc
import os
import platform
import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from mtdqn.agents.bench.timing import (Rate, build_trainer, iterations_for, loop, merge, peak_rss_mb, ratio,
                                       raw_stepper, split_blocks)
from mtdqn.agents.bench import seeds_bench
from mtdqn.agents.bench.update_cost import VARIANTS, learned_vs_hard, update_costs
from mtdqn.agents.core.machine import describe, name as machine_name
from mtdqn.agents.training.build import auto_env_threads
from mtdqn.agents.training.config import TrainConfig
from mtdqn.envs import FRAMESKIP, PROTOCOLS, resolve_games, suites

# What the benchmark reports against (issue "mtdqn bench"); CI does not enforce them.
TARGETS = {
    "acting_vs_raw_env": 0.75,  # our acting loop / raw env stepping, same envs
    "training_vs_ceiling": 0.90,  # our training steps/s / learner-bound ceiling
    "training_vs_sb3": 1.30,  # our training steps/s / SB3 DQN steps/s, same settings
    "scale_max_vs_1_game": 0.90,  # steps/s with the most games / with 1 game, same total envs
    "replay_bytes_per_transition": 7_500,  # at most 7.5 KB
    "learned_vs_hard_sharing": 1.25,  # at most: a learned-sharing update before the freeze / hard sharing's
    "minatar_seeds_cost_per_seed": 1 / 3,  # at most: a seed's CPU time in a batch of 5 / in a process of its own
}


@dataclass(frozen=True)
class Sizes:
    """How long each measurement runs; `QUICK` keeps `mtdqn bench --quick` under 3 minutes on 2 cores."""

    acting_steps: int = 15_000  # agent steps timed per acting measurement
    fill_steps: int = 4_000  # agent steps per game stored before learning starts
    learn_warmup_steps: int = 200  # agent steps with learning on, not timed (first updates are slow)
    train_steps: int = 4_000  # agent steps timed with learning on, ours and SB3 each
    isolated_updates: int = 150  # updates timed alone for the ceiling, ours and SB3 each
    scale_steps: int = 20_000  # agent steps timed per scale point
    scale_games: tuple[int, ...] = (1, 5, 26, 57)
    cost_updates: int = 10  # updates timed per block and variant in the update-cost comparison
    cost_variants: tuple[str, ...] = tuple(VARIANTS)
    minatar_fill_steps: int = 2_000  # agent steps per seed before learning starts (MinAtar rows)
    minatar_steps: int = 2_000  # agent steps per seed timed, one seed alone and the batch each
    minatar_updates: int = 100  # updates timed alone, one seed and the batch each


QUICK = Sizes(acting_steps=3_000, fill_steps=1_000, learn_warmup_steps=80, train_steps=600,
              isolated_updates=30, scale_steps=3_000, scale_games=(1, 5, 57), cost_updates=2,
              cost_variants=tuple(v for v in VARIANTS if not VARIANTS[v].compile),  # compiling takes ~40 s
              minatar_fill_steps=500, minatar_steps=300, minatar_updates=20)


# -- our side ------------------------------------------------------------------------------------
@dataclass
class Acting:
    ours: Rate
    raw_env: Rate
    build_s: float  # building and resetting the envs and network, not in either rate

    @property
    def ratio(self) -> float:
        return ratio(self.ours.steps_per_s, self.raw_env.steps_per_s)


def acting_rates(games: list[str], envs_per_game: int, steps: int, protocol: str = "machado", threads: int = 1,
                 seed: int = 0, precision: str = "fp32") -> Acting:
    """Our acting loop without learning (batched forward over all games, env step, replay insert)
    and raw stepping of the very same envs, in alternating blocks: same games, envs, threads, load."""
    iterations = iterations_for(steps, len(games) * envs_per_game)
    start = time.perf_counter()
    # replay sized to never wrap: first writes (page faults included) as in a run's first pass
    trainer = build_trainer(games, envs_per_game, protocol, threads, None,
                            replay_size=(iterations + 20) * envs_per_game, seed=seed, precision=precision)
    build_s = time.perf_counter() - start
    raw = raw_stepper(trainer.actor.envs, seed)
    ours_parts, raw_parts = [], []
    try:
        loop(trainer, 10)
        raw(10)
        for block in split_blocks(iterations):
            ours_parts.append(loop(trainer, block))
            raw_parts.append(raw(block))
    finally:
        trainer.actor.close()
    return Acting(merge(ours_parts), merge(raw_parts), build_s)


@dataclass
class Training:
    """One side of the training comparison: its loop's rate and its learner's cost alone."""

    rate: Rate
    sample_ms: float  # one batch from replay, alone (SB3: inside update_ms)
    update_ms: float  # one update, alone
    updates_per_step: float
    bytes_per_transition: int  # replay memory per stored transition

    @property
    def ceiling_steps_per_s(self) -> float:
        """Agent steps/s if the learner's work (sample + update) were the only cost per step."""
        return 1000.0 / ((self.sample_ms + self.update_ms) * self.updates_per_step)


def sb3_train_freq(train_frequency: float, num_envs: int) -> tuple[int, int]:
    """SB3 (train_freq in vector steps, gradient_steps) giving one update per `train_frequency` agent steps."""
    if train_frequency != int(train_frequency):
        raise ValueError(f"SB3 needs a whole number of agent steps per update, got {train_frequency}")
    train_frequency = int(train_frequency)
    if train_frequency % num_envs == 0:
        return train_frequency // num_envs, 1
    if num_envs % train_frequency == 0:
        return 1, num_envs // train_frequency
    raise ValueError(f"{num_envs} envs cannot do one update per {train_frequency} agent steps in SB3: "
                     f"use a divisor or a multiple of {train_frequency}")


def sb3_dqn(game: str, envs: int, learning_starts: int, protocol: str = "machado", seed: int = 0):
    """SB3 `DQN("CnnPolicy")` on our env (envs/sb3.py) with TrainConfig's settings.

    Exploration is fixed at TrainConfig.epsilon_end: SB3 skips the forward pass on exploring steps,
    ours never does, so a high epsilon would flatter SB3.
    """
    from stable_baselines3 import DQN

    from mtdqn.envs.sb3 import make_sb3_env

    cfg = TrainConfig()
    env = make_sb3_env(game, envs, PROTOCOLS[protocol], num_threads=auto_env_threads(1, envs), seed=seed)
    train_freq, gradient_steps = sb3_train_freq(cfg.train_frequency, envs)
    return DQN(
        "CnnPolicy", env, learning_rate=cfg.learning_rate, buffer_size=cfg.replay_size,
        learning_starts=learning_starts, batch_size=cfg.batch_size, gamma=cfg.gamma,
        train_freq=(train_freq, "step"), gradient_steps=gradient_steps, n_steps=cfg.n_step,
        target_update_interval=cfg.target_update_period * cfg.train_frequency,
        exploration_initial_eps=cfg.epsilon_end, exploration_final_eps=cfg.epsilon_end,
        max_grad_norm=cfg.max_grad_norm, policy_kwargs={"optimizer_kwargs": {"eps": cfg.adam_eps}},
        device="cpu", seed=seed, verbose=0,
    )


def training_rates(game: str, envs_per_game: int, sizes: Sizes, protocol: str = "machado", threads: int = 1,
                   seed: int = 0, precisions: tuple[str, ...] = ("fp32",)) -> tuple[dict[str, Training], Training]:
    """Ours (at each of `precisions`) and SB3 DQN (fp32, all it does) on the same game, envs and
    settings, learning on, in alternating blocks.

    Each side first stores `fill_steps` and learns for `learn_warmup_steps` untimed; then every
    block times a stretch of training steps of each, and a few updates of each alone.
    """
    trainers = {p: build_trainer([game], envs_per_game, protocol, threads, seed=seed, precision=p,
                                 learning_starts=sizes.fill_steps * FRAMESKIP) for p in precisions}
    cfg, E = TrainConfig(), envs_per_game
    model = sb3_dqn(game, E, iterations_for(sizes.fill_steps, E) * E, protocol, seed)
    torch.set_num_threads(threads)  # one process: the same intra-op threads for both sides
    ours: dict[str, list[Rate]] = {p: [] for p in precisions}
    theirs = []
    alone_s = {p: [0.0, 0.0] for p in precisions}  # sample, update: updates alone
    sb3_update_s = 0.0
    alone_total = 0
    try:
        for trainer in trainers.values():
            loop(trainer, iterations_for(sizes.fill_steps, E))
            loop(trainer, iterations_for(sizes.learn_warmup_steps, E))
            if trainer.learner.updates == 0:
                raise RuntimeError("learning did not start before the timed steps; raise learn_warmup_steps")
        model.learn(model.learning_starts + sizes.learn_warmup_steps)
        blocks = split_blocks(iterations_for(sizes.train_steps, E))
        for block in blocks:
            for p, trainer in trainers.items():
                ours[p].append(loop(trainer, block))
            steps, updates, start = model.num_timesteps, model._n_updates, time.perf_counter()
            model.learn(block * E, reset_num_timesteps=False)
            theirs.append(Rate(model.num_timesteps - steps, time.perf_counter() - start, E,
                               model._n_updates - updates))
            alone = -(-sizes.isolated_updates // len(blocks))
            for p, trainer in trainers.items():
                ready = trainer.replay.ready_games(cfg.batch_size)  # as run() asks
                for _ in range(alone):
                    t0 = time.perf_counter()
                    batch = trainer.sample(ready)
                    t1 = time.perf_counter()
                    trainer.learner.update(batch)
                    t2 = time.perf_counter()
                    alone_s[p][0] += t1 - t0
                    alone_s[p][1] += t2 - t1
            start = time.perf_counter()
            model.train(gradient_steps=alone, batch_size=cfg.batch_size)  # samples inside
            sb3_update_s += time.perf_counter() - start
            alone_total += alone
        buffer = model.replay_buffer
        arrays = (buffer.observations, buffer.next_observations, buffer.actions, buffer.rewards, buffer.dones,
                  buffer.timeouts)
        sb3_bytes = sum(a.nbytes for a in arrays) // (buffer.buffer_size * E)
    finally:
        for trainer in trainers.values():
            trainer.actor.close()
        model.env.close()
    per_step, ms = 1 / cfg.train_frequency, 1000 / alone_total
    return ({p: Training(merge(ours[p]), alone_s[p][0] * ms, alone_s[p][1] * ms, per_step,
                         trainers[p].replay.bytes_per_transition) for p in precisions},
            Training(merge(theirs), 0.0, sb3_update_s * ms, per_step, int(sb3_bytes)))


# -- scale ---------------------------------------------------------------------------------------------
def scale_suite(num_games: int) -> list[str]:
    """1 game: the first of atari5; 5, 10, 26, 57: the named suite of that size; else atari57's first n."""
    named = {len(games): list(games) for name, games in suites().items() if name.startswith("atari")}
    named[1] = [suites()["atari5"][0]]
    return named.get(num_games) or list(suites()["atari57"][:num_games])


def scale_rates(game_counts: tuple[int, ...], total_envs: int, steps: int, protocol: str = "machado",
                threads: int = 1, seed: int = 0, precision: str = "fp32") -> list[dict]:
    """Acting steps/s (summed over envs) as the game count grows at about `total_envs` envs in all.

    Games differ in emulation cost, so part of a change is the game mix and not our overhead: each
    row also has raw stepping of the same envs (`vs_raw_env`) to tell the two apart.
    """
    rows = []
    for n in game_counts:
        games = scale_suite(n)
        envs_per_game = max(1, total_envs // n)
        acting = acting_rates(games, envs_per_game, steps, protocol, threads, seed, precision)
        gc.collect()
        rows.append({"games": n, "envs_per_game": envs_per_game, "envs": n * envs_per_game,
                     "build_s": acting.build_s, **acting.ours.to_dict(),
                     "raw_env_steps_per_s": acting.raw_env.steps_per_s, "vs_raw_env": acting.ratio,
                     "peak_rss_mb": peak_rss_mb()})
    first = rows[0]["steps_per_s"] if rows and rows[0]["games"] == 1 else float("nan")
    for row in rows:
        row["vs_1_game"] = ratio(row["steps_per_s"], first)
    return rows


# -- everything ----------------------------------------------------------------------------------------
@dataclass
class BenchOptions:
    """What `mtdqn bench` measures on (its flags)."""

    quick: bool = False
    """Shorter measurements (under 3 minutes on 2 cores; the full run takes under 15)."""
    game: str = "breakout"
    """Game of the training comparison with SB3 DQN."""
    suite: str = "atari5"
    """Games of the acting comparison with raw env stepping."""
    envs_per_game: int = 4
    """Envs per game in the acting and training comparisons (SB3 gets the same count)."""
    scale_envs: int = 60
    """Total envs in the scale measurement, split evenly over 1, 5, 26 and 57 games (--quick: 1, 5, 57)."""
    threads: int = 1
    """Torch threads, for us and SB3 alike."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Our forward-pass precision for acting and scale (training is measured at both, SB3 at fp32)."""
    protocol: Literal["machado", "classic"] = "machado"
    """Emulator protocol for every measurement."""
    seed: int = 0
    """Seed for the emulators and networks."""
    minatar_game: str = "minatar/breakout"
    """MinAtar game of the seeds rows (skipped without the minatar extra)."""
    seeds: int = 5
    """Seeds trained as one batch in the MinAtar rows, against one seed alone."""


def settings(opts: BenchOptions, sizes: Sizes) -> dict:
    import ale_py
    import stable_baselines3

    cfg = TrainConfig()
    return {
        "suite": opts.suite, "games": resolve_games(opts.suite), "training_game": opts.game,
        "envs_per_game": opts.envs_per_game, "scale_total_envs": opts.scale_envs, "protocol": opts.protocol,
        "batch_size": cfg.batch_size, "train_frequency": cfg.train_frequency, "n_step": cfg.n_step,
        "replay_size": cfg.replay_size, "torch_threads": opts.threads, "precision": opts.precision, "seed": opts.seed,
        "quick": opts.quick,
        "sizes": asdict(sizes), "torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__,
        "ale_py": ale_py.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "machine": machine_name(describe()),
        "load_average_start": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run(opts: BenchOptions, sizes: Sizes | None = None, progress=lambda message: None) -> dict:
    """All measurements, in the JSON layout `mtdqn bench` writes; ratios are computed from the rates here."""
    sizes = sizes or (QUICK if opts.quick else Sizes())
    start = time.perf_counter()
    torch.set_num_threads(opts.threads)
    out = {"settings": settings(opts, sizes), "targets": dict(TARGETS)}
    games = resolve_games(opts.suite)
    args = {"protocol": opts.protocol, "seed": opts.seed}
    precisions = (opts.precision, *(p for p in ("fp32", "bf16") if p != opts.precision))

    progress(f"acting: our loop and raw env stepping, {len(games)} game{'s' * (len(games) != 1)} x "
             f"{opts.envs_per_game} envs")
    acting = acting_rates(games, opts.envs_per_game, sizes.acting_steps, threads=opts.threads,
                          precision=opts.precision, **args)
    out["acting"] = {"ours": acting.ours.to_dict(), "raw_env": acting.raw_env.to_dict(), "ratio": acting.ratio,
                     "build_s": acting.build_s}

    progress(f"training: ours ({' and '.join(precisions)}) and SB3 DQN on {opts.game}, {opts.envs_per_game} envs")
    ours, sb3 = training_rates(opts.game, opts.envs_per_game, sizes, threads=opts.threads, precisions=precisions,
                               **args)

    def training(t: Training) -> dict:
        return {"ours": t.rate.to_dict(), "ratio_vs_sb3": ratio(t.rate.steps_per_s, sb3.rate.steps_per_s),
                "sample_ms": t.sample_ms, "update_ms": t.update_ms, "ceiling_steps_per_s": t.ceiling_steps_per_s,
                "fraction_of_ceiling": ratio(t.rate.steps_per_s, t.ceiling_steps_per_s)}

    # top level: the configured precision; by_precision: every precision measured
    out["training"] = training(ours[opts.precision]) | {
        "precision": opts.precision, "updates_per_step": sb3.updates_per_step,
        "sb3": sb3.rate.to_dict() | {"update_ms": sb3.update_ms, "ceiling_steps_per_s": sb3.ceiling_steps_per_s},
        "by_precision": {p: training(t) for p, t in ours.items()},
    }

    progress(f"scale: {', '.join(map(str, sizes.scale_games))} games at ~{opts.scale_envs} envs")
    rows = scale_rates(sizes.scale_games, opts.scale_envs, sizes.scale_steps, threads=opts.threads,
                       precision=opts.precision, **args)
    out["scale"] = {"rows": rows, "max_games_vs_1_game": rows[-1]["vs_1_game"] if rows else float("nan")}

    progress(f"update cost: {len(sizes.cost_variants)} variants of the update, side by side")
    out["update_cost"] = update_costs(list(sizes.cost_variants), sizes.cost_updates, progress=progress)
    out["learned_sharing"] = learned_vs_hard(out["update_cost"])

    if seeds_bench.available():
        progress(f"MinAtar seeds: 1 seed and {opts.seeds} seeds in one batch on {opts.minatar_game}")
        out["minatar_seeds"] = seeds_bench.seed_rates(opts.minatar_game, opts.seeds, sizes.minatar_fill_steps,
                                                      sizes.minatar_steps, sizes.minatar_updates, opts.threads)
    else:
        out["minatar_seeds"] = {"skipped": "minatar is not installed: pip install -e '.[minatar]'"}

    bpt = ours[opts.precision].bytes_per_transition
    out["memory"] = {"peak_rss_mb": peak_rss_mb(), "replay_bytes_per_transition": bpt,
                     "projected_1m_transitions_gb": bpt * 1e6 / 1e9,
                     "sb3_replay_bytes_per_transition": sb3.bytes_per_transition}
    out["settings"]["load_average_end"] = list(os.getloadavg())
    out["elapsed_s"] = time.perf_counter() - start
    return out
