"""Dead units of a trained torso: channels whose ReLU output is never positive on frames of random play.

    python docs/dead_units.py RUN [--frames 200]

A dead unit passes no signal and gets no gradient (the dormant neurons of Sokar et al. 2023 at tau = 0).
docs/multitask.md quotes this on the 3-game runs: a gate reading on a torso with many dead units says as
much about the units as about the games. For learned sharing after the freeze only the channels some game
keeps are computed, and only those are counted. Per torso (one for hard or learned sharing, one per game
for separate networks), per layer: dead / computed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtdqn.agents.core import checkpoint
from mtdqn.envs import Protocol, make_env
from mtdqn.scripts.evaluate import load_network


def random_frames(game: str, protocol: Protocol, frames: int, seed: int = 0) -> np.ndarray:
    """`frames` stacked observations of uniform random play on one game."""
    env = make_env(game, 1, protocol)
    obs, _ = env.reset(seed=seed)
    rng, out = np.random.default_rng(seed), []
    for _ in range(frames):
        out.append(obs[0])
        obs, *_ = env.step(rng.integers(env.single_action_space.n, size=1))
    env.close()
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--frames", type=int, default=200, help="random-play frames per game")
    args = parser.parse_args()
    path = checkpoint.latest(args.run)
    problem = (f"--frames {args.frames} must be at least 1" if args.frames < 1 else
               f"{str(args.run)!r} has no checkpoints/frames_*.pt: give a run folder" if path is None else None)
    if problem:
        print(f"dead_units: {problem}", file=sys.stderr)
        sys.exit(2)
    state = checkpoint.load(path)
    network = load_network(state, str(path), "cpu").eval()
    protocol = Protocol(**state["protocol"])
    best: dict[nn.Module, torch.Tensor] = {}  # per ReLU, each unit's largest output so far

    def record(module, _inputs, output):
        top = output.transpose(0, 1).flatten(1).amax(1)
        best[module] = top if module not in best else torch.maximum(best[module], top)

    relus = [m for torso in network.torsos for m in torso.net if isinstance(m, nn.ReLU)]
    for m in relus:
        m.register_forward_hook(record)
    with torch.no_grad():
        for gid, game in enumerate(state["games"]):
            obs = torch.from_numpy(random_frames(game, protocol, args.frames))
            network(obs, torch.full((len(obs),), gid))
    print(f"{path}: units never positive on {args.frames} random-play frames per game ({', '.join(state['games'])})")
    per_torso = len(relus) // len(network.torsos)
    for t in range(len(network.torsos)):
        cells = []
        for name, m in zip(("conv1", "conv2", "conv3", "dense"), relus[t * per_torso:(t + 1) * per_torso]):
            dead = int((best[m] <= 0).sum())
            cells.append(f"{name} {dead}/{len(best[m])} ({dead / len(best[m]):.0%})")
        print(f"torso {t}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
