"""`mtdqn bench [--quick] [--out FILE.json]`: our throughput and memory against their references,
measured side by side in one process; a Markdown table on stdout, every number in a JSON file."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from mtdqn.agents.bench.benchmark import BenchOptions
from mtdqn.scripts.cli import UsageError, parse_options


@dataclass
class BenchArgs(BenchOptions):
    out: str | None = None
    """JSON file to write (default: runs/bench/<date>-quick.json or -full.json)."""
    backend: Literal["local", "ray"] = "local"
    """local: everything above; ray: acting throughput of the local loop next to 1 and 2 Ray actors."""


def _f(x: float, digits: int = 0) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _target(value: float, target: float, at_least: bool = True) -> str:
    met = value >= target if at_least else value <= target
    return f"{'>=' if at_least else '<='} {target:g} {'(met)' if met else '(missed)'}"


def markdown_table(result: dict) -> str:
    """One row per reported number: ours, what it is compared with, the ratio, the target; then
    where our loop's time goes, per iteration (one vector step of every game)."""
    s, t, a, tr, m = result["settings"], result["targets"], result["acting"], result["training"], result["memory"]
    rows = [
        (f"acting, {s['suite']} ({a['ours']['envs']} envs), steps/s", _f(a["ours"]["steps_per_s"]),
         f"raw env {_f(a['raw_env']['steps_per_s'])}", _f(a["ratio"], 2), _target(a["ratio"], t["acting_vs_raw_env"])),
    ]
    for p, x in tr["by_precision"].items():  # the configured precision first
        rows += [
            (f"training, {s['training_game']} ({s['envs_per_game']} envs), {p}, steps/s",
             _f(x["ours"]["steps_per_s"], 1),
             f"SB3 DQN (fp32) {_f(tr['sb3']['steps_per_s'], 1)}", _f(x["ratio_vs_sb3"], 2),
             _target(x["ratio_vs_sb3"], t["training_vs_sb3"])),
            (f"training {p} vs learner-bound ceiling, steps/s", _f(x["ours"]["steps_per_s"], 1),
             f"ceiling {_f(x['ceiling_steps_per_s'], 1)}", _f(x["fraction_of_ceiling"], 2),
             _target(x["fraction_of_ceiling"], t["training_vs_ceiling"])),
        ]
    scale = result["scale"]["rows"]
    for row in scale:
        last = row is scale[-1] and row["games"] > 1
        rows.append((f"scale, {_n(row['games'], 'game')} x {_n(row['envs_per_game'], 'env')}, steps/s",
                     _f(row["steps_per_s"]),
                     ("1 game; " if row["games"] > 1 else "")
                     + f"raw env {_f(row['raw_env_steps_per_s'])} ({_f(row['vs_raw_env'], 2)})",
                     _f(row["vs_1_game"], 2), _target(row["vs_1_game"], t["scale_max_vs_1_game"]) if last else ""))
    seeds = result.get("minatar_seeds", {})
    if "cost_per_seed_vs_separate" in seeds:
        rows += [
            (f"{seeds['game']}, 1 seed, agent steps/s", _f(seeds["one_seed_steps_per_s"]), "", "", ""),
            (f"{seeds['game']}, {seeds['seeds']} seeds in one batch, agent steps/s per seed",
             _f(seeds["batch_steps_per_s_per_seed"]), f"1 seed alone {_f(seeds['one_seed_steps_per_s'])}",
             _f(seeds["batch_steps_per_s_per_seed"] / seeds["one_seed_steps_per_s"], 2), ""),
            (f"CPU time per seed, {seeds['seeds']} seeds batched / separate processes",
             _f(seeds["cost_per_seed_vs_separate"], 2), "separate: 1.00", _f(seeds["cost_per_seed_vs_separate"], 2),
             _target(seeds["cost_per_seed_vs_separate"], t["minatar_seeds_cost_per_seed"], False)),
        ]
    bpt = m["replay_bytes_per_transition"]
    rows += [
        ("replay bytes per transition", _f(bpt), f"SB3 DQN {_f(m['sb3_replay_bytes_per_transition'])}",
         _f(bpt / m["sb3_replay_bytes_per_transition"], 2), _target(bpt, t["replay_bytes_per_transition"], False)),
        ("replay memory for 1M transitions, GB", _f(m["projected_1m_transitions_gb"], 2), "", "", ""),
        ("peak RSS of this benchmark, MB", _f(m["peak_rss_mb"]), "", "", ""),
    ]
    lines = ["| measure | ours | compared with | ratio | target |", "|---|---:|---|---:|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]

    def phases(rate: dict) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in rate["phases_ms"].items())

    load = s["load_average_start"][0]
    lines += [
        "",
        f"ms per iteration: acting ({s['precision']}) {phases(a['ours'])}; "
        + "; ".join(f"training {p} {phases(x['ours'])}" for p, x in tr["by_precision"].items()),
        "one update alone: ours " + ", ".join(f"{p} {x['sample_ms']:.1f} sample + {x['update_ms']:.1f} update ms"
                                             for p, x in tr["by_precision"].items())
        + f"; SB3 {tr['sb3']['update_ms']:.1f} ms; {tr['updates_per_step']:g} updates per agent step",
        faster_precision(tr["by_precision"]),
        f"{s.get('machine', str(s['cpu_count']) + ' CPUs')}; torch {s['torch']}, {s['torch_threads']} torch "
        f"thread(s), load average {load:.2f} at start; {result['elapsed_s']:.0f} s" + (" (quick)" if s["quick"] else ""),
    ]
    if "cost_per_seed_vs_separate" in seeds:
        lines.append(f"MinAtar update alone: 1 seed {seeds['one_update_ms']:.1f} ms, {seeds['seeds']} seeds "
                     f"{seeds['batch_update_ms']:.1f} ms ({seeds['batch_update_ms_per_seed']:.1f} ms per seed)")
    elif seeds:
        lines.append(f"MinAtar seeds rows skipped: {seeds['skipped']}")
    lines += ["", "| update (fp32, batch 32 per game) | games | GFLOPs | ms | ms per game | vs first |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['games']} | {r['gflops']:.2f} | {r['ms_per_update']:.1f} | "
              f"{r['ms_per_game_update']:.1f} | {r['vs_first']:.2f} |" for r in result["update_cost"]]
    for key, label in (("training", "before the freeze"), ("pruned", "frozen, half of each layer pruned")):
        if key in result.get("learned_sharing", {}):
            x = result["learned_sharing"][key]
            lines.append(f"learned sharing {label} / hard sharing: {x['ms_ratio']:.2f} of the time, "
                         f"{x['gflops_ratio']:.2f} of the FLOPs"
                         + (f"; target {_target(x['ms_ratio'], t['learned_vs_hard_sharing'], False)}"
                            if key == "training" else ""))
    if load > 0.5 * (s["cpu_count"] or 1):
        lines.append("warning: the machine was busy: absolute rates are low and ratios are noisy")
    return "\n".join(lines)


def faster_precision(by_precision: dict) -> str:
    """Which --precision updates faster on this machine, from the updates measured alone (bf16 is faster
    with AMX and slower without it: the CPU decides, so measure)."""
    ms = {p: x["update_ms"] for p, x in by_precision.items()}
    if len(ms) < 2:
        return f"only {', '.join(ms)} measured: no precision to compare"
    fast, slow = sorted(ms, key=ms.get)[:2]
    return (f"faster precision on this machine: {fast} ({ms[fast]:.1f} ms per update vs {ms[slow]:.1f} ms {slow}); "
            f"train with --precision {fast}")


def validate(args: BenchArgs) -> None:
    from mtdqn.agents.bench.benchmark import sb3_train_freq
    from mtdqn.agents.training.config import TrainConfig
    from mtdqn.envs import check_game, resolve_games

    for name in ("envs_per_game", "scale_envs", "threads"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if "," in args.game:
        raise UsageError(f"--game takes one game id, got {args.game!r}")
    check_game(args.game)
    resolve_games(args.suite)
    try:
        sb3_train_freq(TrainConfig.train_frequency, args.envs_per_game)
    except ValueError as e:
        raise UsageError(f"--envs-per-game: {e}") from None
    if args.seeds < 2:
        raise UsageError(f"--seeds must be 2 or more (the batch set against one seed), got {args.seeds}")
    if not args.minatar_game.startswith("minatar/") or "," in args.minatar_game:
        raise UsageError(f"--minatar-game takes one MinAtar game id (minatar/<game>), got {args.minatar_game!r}")
    if args.out and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out!r} is a folder: give a file name like bench.json")


def _json_safe(value):
    """NaN (a ratio with nothing to compare) becomes null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str]) -> None:
    args = parse_options(BenchArgs, argv, "mtdqn bench",
                         "Measure acting, training and scaling throughput and replay memory against their references.")
    validate(args)
    if args.backend == "ray":
        from mtdqn.agents.training.config import ConfigError
        from mtdqn.agents.training.validate import check_ray

        try:
            check_ray(None)
        except ConfigError as e:
            raise UsageError(str(e)) from None
        from mtdqn.agents.bench import ray_bench as benchmark
    else:
        from mtdqn.agents.bench import benchmark
    table = benchmark.markdown_table if args.backend == "ray" else markdown_table

    out = Path(args.out or f"runs/bench/{time.strftime('%Y%m%d-%H%M%S')}-{'quick' if args.quick else 'full'}"
                    f"{'-ray' if args.backend == 'ray' else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)  # fail now, not after the measurements
    opts = BenchOptions(**{f.name: getattr(args, f.name) for f in fields(BenchOptions)})
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", file=sys.stderr, flush=True)

    result = benchmark.run(opts, progress=progress)
    out.write_text(json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n")
    print(table(result))
    print(f"wrote {out}", file=sys.stderr)
