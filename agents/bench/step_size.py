"""How far each layer moves per update as the number of games grows: the measurement behind the shared
torso's step (docs/multitask.md, "Many games, one step size").

The synthetic problem: game g pays reward 1 for its own best action (g mod its action count) in
one-step episodes on a frame with a bright band. Each layer's mean |change| per update over the first
updates of a fresh agent (learning rate 1e-4, Adam eps 1.5e-4: the young network, where eps outweighs
sqrt(v) for most weights and Adam's step is linear in the gradient) is averaged over the layers the
games read (their torso's, their own head rows), and compared with the mean over the same games of
one-game agents' steps. Each game's batch is `batch_size` samples of its own, as in a run.

`band_step=0` (the default) shows every game the same frame, so the games' gradients reach the same
weights and differ in direction only: the step size alone is measured. With bands at different rows
(`band_step=5`) the games also use different weights of the dense layer, and a layer's mean |change|
grows with how many of its weights some game uses, not with how far each moves.

    python -m mtdqn.agents.bench.step_size            # the table in docs/multitask.md
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch

from mtdqn.agents.core.replay import TaskBalancedReplay
from mtdqn.agents.training.build import build_learner
from mtdqn.agents.training.config import TrainConfig

LAYERS = ("conv1", "conv2", "conv3", "dense", "head")
ACTIONS = (6, 4, 9, 18)  # action counts, cycled over the games
GAME_COUNTS = (1, 2, 4, 8, 16)
SEEDS = (0, 1)


def synthetic_replay(games: list[int], band_step: int = 0, transitions: int = 200, seed: int = 0) -> TaskBalancedReplay:
    """A replay of synthetic games (numbers in `games`), slot k holding game games[k]."""
    rng = np.random.default_rng(seed)
    replay = TaskBalancedReplay(len(games), capacity_per_game=2 * transitions + 8, lanes=1, n_step=1, seed=seed)
    for slot, g in enumerate(games):
        n = ACTIONS[g % len(ACTIONS)]
        frame = np.full((1, 84, 84), 40, np.uint8)
        row = band_step * g % 70
        frame[0, row:row + 14, :] = 255
        for _ in range(transitions):
            a = int(rng.integers(n))
            replay.add(slot, frame, np.array([a]), np.array([float(a == g % n)]), np.array([True]),
                       np.array([False]), np.array([True]))
            replay.add(slot, frame, np.array([0]), np.array([0.0]), np.array([False]), np.array([False]),
                       np.array([False]))
    return replay


def _config(num_games: int, balance: str, sharing: str, precision: str) -> TrainConfig:
    games = [f"g{g}" for g in range(num_games)]
    half = max(1, num_games // 2)  # grouped: two groups
    return TrainConfig(suite=",".join(games), balance=balance, sharing=sharing, precision=precision,
                       learning_rate=1e-4, adam_eps=1.5e-4, target_update_period=1, n_step=1,
                       groups=";".join(",".join(games[i:i + half]) for i in range(0, num_games, half))
                       if sharing == "grouped" else None,
                       task_weights=",".join(f"{g}=1" for g in games) if balance == "weighted" else None)


def layer_steps(games: list[int], balance: str = "equal", sharing: str = "shared", precision: str = "fp32",
                band_step: int = 0, updates: int = 8, batch_size: int = 32, seed: int = 0) -> dict[str, float]:
    """Mean |change| per update of each layer a game reads (its torso's, its head rows), averaged over
    the games, with `games` (synthetic game numbers) training together."""
    torch.manual_seed(seed)
    cfg = _config(len(games), balance, sharing, precision)
    counts = [ACTIONS[g % len(ACTIONS)] for g in games]
    learner = build_learner(cfg, cfg.suite.split(","), counts)
    net = learner.online
    with torch.no_grad():  # every torso starts where a one-game agent's does (soft sharing's already do), so
        for torso in net.torsos[1:]:  # the comparison sees the update rule, not another draw of initial weights
            torso.load_state_dict(net.torsos[0].state_dict())
    layers = [[m.weight for m in t.net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))] for t in net.torsos]
    offsets = np.cumsum([0] + counts)
    replay = synthetic_replay(games, band_step, seed=seed)
    steps = {name: [] for name in LAYERS}
    for _ in range(updates):
        before = [[w.detach().clone() for w in ws] for ws in layers], net.heads.weight.detach().clone()
        learner.update(replay.sample(batch_size * len(games), list(range(len(games)))))
        moved = [[(w.detach() - b).abs().mean().item() for w, b in zip(ws, bs)] for ws, bs in zip(layers, before[0])]
        head = (net.heads.weight.detach() - before[1]).abs()
        for k, name in enumerate(LAYERS[:4]):
            steps[name].append(np.mean([moved[net.torso_of[s]][k] for s in range(len(games))]))
        steps["head"].append(np.mean([head[offsets[s]:offsets[s + 1]].mean().item() for s in range(len(games))]))
    return {name: float(np.mean(v)) for name, v in steps.items()}


@functools.lru_cache(maxsize=None)
def _alone(game: int, balance: str, sharing: str, precision: str, band_step: int, seed: int) -> tuple:
    """A one-game agent's steps; the modes that are the same agent with one game share one entry
    (weighted with weight 1 and pcgrad are equal; grouped, separate and soft are one torso)."""
    steps = layer_steps([game], balance, sharing, precision, band_step, seed=seed)
    return tuple(steps[k] for k in LAYERS)


def relative_steps(game_counts=GAME_COUNTS, seeds=SEEDS, balance: str = "equal", sharing: str = "shared",
                   precision: str = "fp32", band_step: int = 0) -> dict[int, dict[str, float]]:
    """Per G, each layer's step with games 0..G-1 together over their one-game agents' mean step, both
    averaged over `seeds` (1.0: a game's layers move as far per update whatever the number of games)."""
    one = {"balance": "equal" if balance in ("weighted", "pcgrad") else balance,
           "sharing": "learned" if sharing == "learned" else "shared"}
    out = {}
    for count in game_counts:
        together = [layer_steps(list(range(count)), balance, sharing, precision, band_step, seed=s) for s in seeds]
        alone = np.mean([[_alone(g, one["balance"], one["sharing"], precision, band_step, s) for g in range(count)]
                         for s in seeds], axis=(0, 1))
        out[count] = {k: float(np.mean([t[k] for t in together]) / a) for k, a in zip(LAYERS, alone)}
    return out


def markdown(rows: dict[str, dict[int, dict[str, float]]]) -> str:
    lines = ["| variant | G | " + " | ".join(LAYERS) + " |", "|---|---:|" + "---:|" * len(LAYERS)]
    for name, table in rows.items():
        for count, steps in table.items():
            lines.append(f"| {name} | {count} | " + " | ".join(f"{steps[k]:.2f}" for k in LAYERS) + " |")
    return "\n".join(lines)


VARIANTS = {"equal": {}, "weighted": {"balance": "weighted"}, "popart": {"balance": "popart"},
            "pcgrad": {"balance": "pcgrad"}, "grouped": {"sharing": "grouped"}, "learned": {"sharing": "learned"},
            "soft": {"sharing": "soft"}, "separate": {"sharing": "separate"}, "bf16": {"precision": "bf16"},
            "equal, bands apart": {"band_step": 5}}


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    names = argv or list(VARIANTS)
    print(markdown({name: relative_steps(**VARIANTS[name]) for name in names}))


if __name__ == "__main__":
    main(sys.argv[1:])
