"""Evaluation: run episodes per game, score them, write the report.

Used by `mtdqn evaluate` and by training's periodic evaluation, so both report the same numbers.
Each game gets `episodes` envs that each play exactly one episode from its own seed, all games
stepping together with one batched forward per step.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mtdqn.agents.core.episode_log import EpisodeLog, say
from mtdqn.agents.core.learner import epsilon_greedy
from mtdqn.envs import Lives, Protocol, aggregate_hns, hns, make_env, minatar
from mtdqn.envs.protocol import episode_cap
from mtdqn.envs.scores import score_name

EVAL_SEED_OFFSET = 1_000_000  # evaluation emulators never share seeds with training ones


def run_episodes(network, games: list[str], game_ids: list[int], protocol: Protocol, episodes: int,
                 epsilon: float, seed: int, device="cpu", env_threads: int = 1, progress: bool = False,
                 progress_interval: float = 30.0, stop: Callable[[], bool] | None = None) -> dict[str, np.ndarray]:
    """Raw episode returns, [episodes] per game; game_ids index the network's heads.

    `progress`: lines on stderr as it plays (core/episode_log.py): each finished episode (its return,
    frames and why it ended), every `progress_interval` seconds the games still playing, and each game
    as it finishes, so an evaluation whose output goes to a file shows it is alive long before its table.
    `stop`: polled every step; True abandons the episodes (episode_log.EvaluationInterrupted). A caller
    that takes Ctrl-C as a flag (training's catch_signals) passes it, or the flag would wait for the last
    episode's end, up to the cap. The envs are closed however it ends."""
    device = torch.device(device)
    log = EpisodeLog(games, episodes, protocol, progress, progress_interval, stop)
    reported = set()
    envs = [make_env(g, episodes, protocol, num_threads=env_threads) for g in games]
    try:
        resets = [env.reset(seed=EVAL_SEED_OFFSET + seed * 1000 + i * episodes) for i, env in enumerate(envs)]
        obs = np.concatenate([o for o, _ in resets])
        lives = Lives(np.concatenate([info["lives"] for _, info in resets]))
        head = np.repeat(np.asarray(game_ids), episodes)
        head_t = torch.from_numpy(head).to(device)
        num_actions = np.repeat([int(env.single_action_space.n) for env in envs], episodes)
        returns = np.zeros(len(head))
        running = np.ones(len(head), dtype=bool)
        rng = np.random.default_rng(EVAL_SEED_OFFSET + seed)
        network.eval()
        while running.any():
            actions = epsilon_greedy(network, obs, head_t, num_actions, epsilon, rng, device)
            for i, env in enumerate(envs):
                env.send(actions[i * episodes:(i + 1) * episodes])
            results = [env.recv() for env in envs]
            obs = np.concatenate([r[0] for r in results])
            now_lives = np.concatenate([r[4]["lives"] for r in results])
            if protocol.life_loss_reset:
                lives.step(now_lives, obs)
            returns += np.concatenate([r[1] for r in results]) * running
            terminated, truncated = (np.concatenate([r[k] for r in results]) for k in (2, 3))
            ending = running & (terminated | truncated)
            running &= ~ending
            log.step(ending, running, returns, np.concatenate([r[4]["episode_frame_number"] for r in results]),
                     terminated, truncated, now_lives)
            for i, g in enumerate(games):
                if progress and i not in reported and not running[i * episodes:(i + 1) * episodes].any():
                    reported.add(i)
                    say(game_done_line(g, returns[i * episodes:(i + 1) * episodes], log.seconds()))
    finally:
        network.train()
        for env in envs:
            env.close()
    return {g: returns[i * episodes:(i + 1) * episodes] for i, g in enumerate(games)}


def game_done_line(game: str, returns: np.ndarray, seconds: float) -> str:
    """'evaluate: pong done, 2 episodes, mean return -21.0 (std 0.0), 12.3 s'."""
    return (f"evaluate: {game} done, {len(returns)} episode{'s' if len(returns) != 1 else ''}, mean return "
            f"{np.mean(returns):g} (std {np.std(returns):g}), {seconds:.1f} s")


def record_video(network, game: str, game_id: int, protocol: Protocol, epsilon: float, seed: int,
                 path: Path, device="cpu") -> float:
    """Play one episode and write it as MP4 in full-size colour; returns its score.

    A colour env runs the same emulation in lockstep with the grayscale one the network sees
    (same seed, same actions: ALE is deterministic), so the video shows exactly the scored episode.
    A MinAtar game has no colour frames: its grid is drawn (envs/minatar.py `rgb_frames`).
    """
    import imageio.v2 as imageio

    device = torch.device(device)
    grid = minatar.is_minatar(game)
    env, rgb_env = make_env(game, 1, protocol), None if grid else make_env(game, 1, protocol, rgb=True)
    run_seed = EVAL_SEED_OFFSET + seed * 1000 + 999
    obs, info = env.reset(seed=run_seed)
    lives = Lives(info["lives"])
    rgb = minatar.rgb_frames(obs[:1]) if grid else rgb_env.reset(seed=run_seed)[0]
    head = torch.tensor([game_id], device=device)
    rng = np.random.default_rng(run_seed)
    frames, score, done = [rgb[0] if grid else rgb[0, 0]], 0.0, False
    network.eval()
    while not done:
        action = epsilon_greedy(network, obs, head, np.array([int(env.single_action_space.n)]), epsilon, rng, device)
        obs, reward, term, trunc, info = env.step(action)
        if protocol.life_loss_reset:
            lives.step(info["lives"], obs)
        rgb = minatar.rgb_frames(obs[:1]) if grid else rgb_env.step(action)[0]
        frames.append(rgb[0] if grid else rgb[0, 0])
        score += float(reward[0])
        done = bool(term[0] or trunc[0])
    network.train()
    env.close()
    if rgb_env is not None:
        rgb_env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=15, macro_block_size=1)  # 60 Hz / frameskip 4
    return score


def summarize(returns: dict[str, np.ndarray], *, protocol: Protocol, epsilon: float,
              frames: dict[str, int] | None = None, source: str | None = None) -> dict:
    """Per-game raw score and HNS records plus rliable aggregates over games with a reference."""
    records, with_ref = [], []
    for game, scores in returns.items():
        record = {"game": game, "episodes": int(len(scores)), "frames": (frames or {}).get(game),
                  "raw_mean": float(np.mean(scores)), "raw_std": float(np.std(scores)),
                  "raw_min": float(np.min(scores)), "raw_max": float(np.max(scores)),
                  "scores": [float(x) for x in scores]}
        episode_hns = hns(game, scores)
        if episode_hns is not None:
            record["hns"] = float(np.mean(episode_hns))
            with_ref.append(episode_hns)
        records.append(record)
    aggregate = {"games_with_reference": len(with_ref)}
    if with_ref:
        aggregate.update(aggregate_hns(with_ref))
    return {"source": source, "protocol": protocol.to_dict(), "episode_cap": episode_cap(protocol.to_dict()),
            "epsilon": epsilon, "games": records, "aggregate": aggregate}


def cap_of(report: dict) -> dict:
    """A report's episode cap (envs/protocol.py `episode_cap`), read from its protocol if it predates the record."""
    return report.get("episode_cap") or episode_cap(report["protocol"])


def capped_note(report: dict) -> str | None:
    """The sentence saying that a report's episodes were cut below its protocol's cap (None if they were not):
    its scores are then not those of whole episodes."""
    cap = cap_of(report)
    if not cap["below_protocol"]:
        return None
    name = score_name([r["game"] for r in report["games"]])
    return (f"Capped: episodes were cut at {cap['frames']:,} frames, below the {report['protocol']['name']} protocol's "
            f"{cap['protocol_frames']:,}: raw scores and {name} are those of cut-short episodes, not comparable with "
            "whole-episode evaluations or published scores.")


def markdown_table(report: dict) -> str:
    name = score_name([r["game"] for r in report["games"]])  # HNS, or MinAtar's DQN-normalized score
    lines = [f"| game | frames | episodes | raw mean | raw std | {name} |", "|---|---:|---:|---:|---:|---:|"]
    for r in report["games"]:
        hns_text = f"{r['hns']:.3f}" if "hns" in r else "n/a"
        frames = f"{r['frames']:,}" if r.get("frames") is not None else "?"
        lines.append(f"| {r['game']} | {frames} | {r['episodes']} | {r['raw_mean']:.1f} | {r['raw_std']:.1f} | {hns_text} |")
    agg = report["aggregate"]
    capped = capped_note(report)
    lines += ["", capped] if capped else []
    lines.append("")
    lines.append(f"Aggregate {name} of the games' means over {agg['games_with_reference']} game{'s' * (agg['games_with_reference'] != 1)}. 1 run: no interval "
                 f"over seeds; the interval resamples this checkpoint's episodes only (measurement precision, not "
                 f"seed-to-seed spread: compare several runs with mtdqn compare).")
    lines.append("")
    lines.append("| metric | value | 95% interval over episodes (within run) |")
    lines.append("|---|---:|---|")
    for name in ("iqm", "median", "mean", "optimality_gap"):
        if name in agg:
            a = agg[name]
            low, high = a["episode_interval"]
            lines.append(f"| {name.replace('_', ' ')} | {a['value']:.3f} | [{low:.3f}, {high:.3f}] |")
    return "\n".join(lines) + "\n"


def hns_limits(values: list[float], reference: float = 1.0, near: float = 1.0, pad: float = 0.15,
               edge: float = 0.02) -> tuple[float, float, bool]:
    """(left, right, whether the reference line is drawn) for the x axis of `plot_hns`.

    The axis spans the scores and 0, not 0 to the reference: scores of -0.06 to 0.1 on a 0-to-1 axis are
    slivers nobody can read. The reference (human = 1, or MinAtar's DQN = 1) is drawn when it lies within
    `near` spans of the scores' range, so drawing it at most doubles the axis; otherwise it is named in
    words. `pad` spans leave room for the value labels on a side where bars end, `edge` spans elsewhere."""
    low, high = min(0.0, *values), max(0.0, *values)
    span = high - low or 1.0
    show = low - near * span <= reference <= high + near * span
    if show:
        low, high = min(low, reference), max(high, reference)
        span = high - low
    return (low - (pad if min(values) < 0 else edge) * span, high + (pad if max(values) > 0 else edge) * span, show)


def hns_figure(report: dict):
    """The bars of `plot_hns`: a bar per game labelled with its value, on an axis fitted to the scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["games"] if "hns" in r]
    name = score_name([r["game"] for r in rows])
    reference = "human" if name == "HNS" else "DQN"
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(rows), 3) + 1.2))
    if rows:
        values = [r["hns"] for r in rows]
        bars = ax.barh([r["game"] for r in rows], values, color="tab:blue")
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=3, fontsize=8)
        left, right, show = hns_limits(values)
        ax.set_xlim(left, right)
        ax.axvline(0.0, color="black", linewidth=0.8)
        if show:
            ax.axvline(1.0, color="gray", linestyle="--", linewidth=1, label=f"{reference} = 1")
            ax.legend(loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel(name if not rows or show else f"{name} ({reference} = 1 lies off this axis)")
    iqm = report["aggregate"].get("iqm")
    title = f"IQM {name} {iqm['value']:.3f}" if iqm else "no game with a reference score"
    cap = cap_of(report)
    cut = f", episodes cut at {cap['frames']:,} frames" if cap["below_protocol"] else ""
    ax.set_title(f"{title} ({report['protocol']['name']} protocol{cut})")
    fig.tight_layout()
    return fig


def plot_hns(report: dict, path: Path) -> None:
    """hns.png: `hns_figure` written to `path`."""
    import matplotlib.pyplot as plt

    fig = hns_figure(report)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """eval.json, eval.csv, eval.md and hns.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"eval.{k}" for k in ("json", "csv", "md")}
    paths["png"] = out_dir / "hns.png"
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    fields = ["game", "frames", "episodes", "raw_mean", "raw_std", "raw_min", "raw_max", "hns"]
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")  # scores stay in the JSON
        writer.writeheader()
        writer.writerows(report["games"])
    paths["md"].write_text(markdown_table(report))
    plot_hns(report, paths["png"])
    return paths


def learning_curves(run_dir: Path, up_to: int | None = None) -> dict[str, list[tuple[int, float]]]:
    """Per-game (frames per game, HNS) from a run's periodic evaluations (up to `up_to` frames if
    given), oldest first; "iqm" holds the aggregate. During a run, evaluations past its checkpoint
    belong to an earlier attempt killed before that checkpoint and are left out."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for path in sorted((run_dir / "evals").glob("frames_*/eval.json")):
        frames = path.parent.name[len("frames_"):]
        if not frames.isdigit() or (up_to is not None and int(frames) > up_to):
            continue
        report = json.loads(path.read_text())
        for r in report["games"]:
            if "hns" in r:
                curves.setdefault(r["game"], []).append((int(frames), r["hns"]))
        if "iqm" in report["aggregate"]:
            curves.setdefault("iqm", []).append((int(frames), report["aggregate"]["iqm"]["value"]))
    return curves


def plot_learning_curves(curves: dict[str, list[tuple[int, float]]], path: Path, games: list[str] = ()) -> Path:
    """HNS (MinAtar: DQN-normalized score) against frames per game, a line per game and the IQM dashed, so
    stalled games stand out. `games`: the run's, which name the score before any curve does."""
    import matplotlib.pyplot as plt

    fig = learning_curve_figure(curves, games)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def learning_curve_figure(curves: dict[str, list[tuple[int, float]]], games: list[str] = ()):
    """The figure of `plot_learning_curves`. Until a curve has two points it says so in words, and
    with no game to label it draws no legend (matplotlib would warn about an empty one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for game, points in curves.items():
        x, y = zip(*points)
        style = {"color": "black", "linestyle": "--", "linewidth": 2} if game == "iqm" else {}
        ax.plot(x, y, marker="o", markersize=3, label="IQM" if game == "iqm" else game, **style)
    ax.axhline(0.0, color="gray", linewidth=0.8)
    name = score_name([*games, *curves])  # HNS, or MinAtar's DQN-normalized score
    ax.set_xlabel("frames per game")
    ax.set_ylabel("human-normalized score" if name == "HNS" else "DQN-normalized score (random 0, DQN 1)")
    ax.set_title(f"evaluation {name} during training")
    if not curves:
        reference = "a human" if name == "HNS" else "a DQN"
        ax.text(0.5, 0.5, f"no evaluation of a game with {reference} reference yet", transform=ax.transAxes,
                ha="center", va="center")
    elif max(len(points) for points in curves.values()) == 1:
        ax.text(0.5, 0.95, "one evaluation so far", transform=ax.transAxes, ha="center", va="top")
    if curves:
        ax.legend(fontsize=7, ncol=2 if len(curves) > 8 else 1, loc="best")
    fig.tight_layout()
    return fig
