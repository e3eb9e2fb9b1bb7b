"""`mtdqn bench --backend ray`: acting throughput of the local loop next to 1 and 2 Ray actors.

All three run in this process's Ray instance at once and take turns in blocks (timing.py's
scheme), so load drifts hit each alike. No learning: this measures how fast transitions reach the
learner's replay. A Ray side's block asks every actor for chunks until it has received the
block's agent steps, then waits for the chunks still in flight, so no step is timed in a block
other than its own. Each Ray actor steps `envs_per_game` envs of its games (distributed/ray_trainer.py),
so 2 actors step twice the envs of 1.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from mtdqn.agents.bench.benchmark import BenchOptions, Sizes, settings
from mtdqn.agents.bench.timing import Rate, build_trainer, iterations_for, loop, merge, split_blocks
from mtdqn.agents.distributed.ray_trainer import RayTrainer, connect
from mtdqn.envs import resolve_games

ACTOR_COUNTS = (1, 2)


def _ray_block(trainer: RayTrainer, steps: int) -> Rate:
    """Agent steps received by the learner per second, from the first request to the last chunk back."""
    epsilon = trainer.epsilon()
    start = time.perf_counter()
    received = 0
    while received < steps:
        received += trainer.step(epsilon)[0].steps
    received += trainer.actor.drain(trainer.replay).steps
    return Rate(received, time.perf_counter() - start, sum(trainer.actor.lanes))


def run(opts: BenchOptions, sizes: Sizes | None = None, progress=lambda message: None) -> dict:
    """Local acting and Ray acting with each of ACTOR_COUNTS, alternating blocks; the JSON `mtdqn bench` writes."""
    from mtdqn.agents.bench import benchmark

    sizes = sizes or (benchmark.QUICK if opts.quick else Sizes())
    start = time.perf_counter()
    info = settings(opts, sizes)  # load average at the start
    games = resolve_games(opts.suite)
    connect(None, sum(ACTOR_COUNTS))  # every side's actors are alive at once
    local = build_trainer(games, opts.envs_per_game, opts.protocol, opts.threads, seed=opts.seed)
    rays = {}
    try:
        for n in ACTOR_COUNTS:
            progress(f"starting {n} Ray actor(s) for {len(games)} game{'s' * (len(games) != 1)} x "
                     f"{opts.envs_per_game} envs")
            rays[n] = RayTrainer(replace(local.cfg, backend="ray", num_actors=n), local.run_dir)
        iterations = iterations_for(sizes.acting_steps, len(games) * opts.envs_per_game)
        loop(local, 10)  # warm-up, untimed: first forward passes, first chunks
        for t in rays.values():
            _ray_block(t, 1)
        parts = {"local": [], **{n: [] for n in rays}}
        progress(f"acting: local loop and {', '.join(map(str, rays))} Ray actor(s), {sizes.acting_steps} steps each")
        for block in split_blocks(iterations):
            parts["local"].append(loop(local, block))
            for n, t in rays.items():
                parts[n].append(_ray_block(t, block * len(games) * opts.envs_per_game))
    finally:
        local.actor.close()
        for t in rays.values():
            t.actor.close()
    base = merge(parts["local"])
    rows = [{"backend": "local", "actors": 0, **base.to_dict(), "vs_local": 1.0}]
    for n in rays:
        rate = merge(parts[n])
        rows.append({"backend": "ray", "actors": n, **rate.to_dict(), "vs_local": rate.steps_per_s / base.steps_per_s})
    out = {"settings": info | {"chunk_steps": local.cfg.chunk_steps, "backend": "ray"},
           "acting": rows, "elapsed_s": time.perf_counter() - start}
    out["settings"]["load_average_end"] = list(os.getloadavg())
    return out


def markdown_table(result: dict) -> str:
    s = result["settings"]
    lines = ["| backend | actors | envs | agent steps/s | vs local |", "|---|---:|---:|---:|---:|"]
    for row in result["acting"]:
        lines.append(f"| {row['backend']} | {row['actors'] or '-'} | {row['envs']} | {row['steps_per_s']:,.0f} "
                     f"| {row['vs_local']:.2f} |")
    lines += ["", f"acting only (no learning), {s['suite']}, {s['envs_per_game']} envs per game per actor, "
                  f"chunks of {s['chunk_steps']} vector steps; torch {s['torch']}, {s['cpu_count']} CPUs, "
                  f"load average {s['load_average_start'][0]:.2f} at start; {result['elapsed_s']:.0f} s"]
    return "\n".join(lines)
