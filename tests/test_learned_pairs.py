"""The issue's target on the synthetic multi-task problem (test_learner's kind: one-step episodes from a
replay): two pairs of tasks whose optimal features conflict across pairs and agree within a pair.

Every task sees the same frames, a horizontal bar in one of K rows and a vertical bar in one of K
columns. Pair A's action values depend on the row only (A2's are A1's with the actions permuted: the
same features), pair B's on the column only. Learned sharing should give each pair channels of its
own: high gate overlap within a pair, low across, and a lower final loss than hard sharing at the
same width.
"""

import functools

import numpy as np
import pytest
import torch

from mtdqn.agents import structure
from mtdqn.agents.learner import DQNLearner
from mtdqn.agents.network import MultiHeadQNetwork
from mtdqn.agents.replay import TaskBalancedReplay

K, WIDTH, UPDATES, BATCH = 8, 0.0625, 300, 64
_tables = np.random.default_rng(123)
TA, TB = _tables.random((K, 4)), _tables.random((K, 4))
PERM = [2, 3, 0, 1]
VALUE = [lambda r, c, a: TA[r, a], lambda r, c, a: TA[r, PERM[a]],
         lambda r, c, a: TB[c, a], lambda r, c, a: TB[c, PERM[a]]]


def frame(r: int, c: int) -> np.ndarray:
    f = np.zeros((1, 84, 84), np.uint8)
    f[0, 10 * r:10 * r + 6, :] = 255
    f[0, :, 10 * c:10 * c + 6] = 255
    return f


@functools.cache
def trained(gated: bool):
    """Final loss (mean squared error of Q against the exact values, all frames and actions) and the network."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    replay = TaskBalancedReplay(4, capacity_per_game=3000, lanes=1, n_step=1, seed=0)
    for g in range(4):
        for _ in range(1200):
            r, c, a = rng.integers(K), rng.integers(K), rng.integers(4)
            replay.add(g, frame(r, c), np.array([a]), np.array([VALUE[g](r, c, a)]), np.array([True]),
                       np.array([False]), np.array([True]))
            replay.add(g, frame(r, c), np.array([0]), np.array([0.0]), np.array([False]), np.array([False]),
                       np.array([False]))
    net = MultiHeadQNetwork([4] * 4, gated=gated, width=WIDTH)
    learner = DQNLearner(net, learning_rate=5e-4, target_update_period=1, gate_sparsity=GATES["sparsity"],
                         gate_sharing=GATES["sharing"], gate_lr=GATES["lr"])
    ready = replay.ready_games(1)
    for _ in range(UPDATES):
        learner.update(replay.sample(BATCH, ready))
    obs = torch.from_numpy(np.stack([np.repeat(frame(r, c), 4, 0) for r in range(K) for c in range(K)]))
    losses = []
    with torch.no_grad():
        for g in range(4):
            q = net(obs, torch.full((K * K,), g))
            target = torch.tensor([[VALUE[g](r, c, a) for a in range(4)] for r in range(K) for c in range(K)])
            losses.append(((q - target) ** 2).mean().item())
    return float(np.mean(losses)), net


GATES = {"sparsity": 3e-3, "sharing": 0.0, "lr": 0.05}


@pytest.mark.xfail(strict=False, reason=(
    "target not met yet. Measured on this problem (width 0.0625, 300 updates): hard sharing 0.0585; learned "
    "0.0699 at sparsity 3e-3 (overlap within 0.97, across 0.95), 0.0645 at 1e-3 (0.99 / 0.96); at width 0.125 and "
    "500 updates shared 0.0017, learned 0.038 at 1e-2 (0.93 / 0.88). Pairs do close the same channels, but closing "
    "costs more capacity than it removes interference, and closed downstream gates cut the TD gradient upstream"))
def test_learned_gates_split_the_pairs_and_beat_hard_sharing_at_the_same_width():
    shared_loss, _ = trained(False)
    learned_loss, net = trained(True)
    overlap = structure.overlaps(structure.hard_gates(net))["all"]
    within, across = (overlap[0, 1] + overlap[2, 3]) / 2, overlap[:2, 2:].mean()
    assert within > 0.7 and across < 0.5, (within, across)
    assert learned_loss < shared_loss, (learned_loss, shared_loss)
