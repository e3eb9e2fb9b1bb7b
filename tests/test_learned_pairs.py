"""The issue's target on the synthetic multi-task problem (test_learner's kind: one-step episodes from a
replay): two pairs of tasks whose optimal features conflict across pairs and agree within a pair.

Every task sees the same frames, a horizontal bar in one of K rows and a vertical bar in one of K
columns. Pair A's action values depend on the row only (A2's are A1's with the actions permuted: the
same features), pair B's on the column only. The torso has room for both pairs' detectors in its
convolutions but a narrow dense layer (8 units): with hard sharing each dense unit reads rows and
columns at once, so it mixes what pair A needs with what it must ignore. With learned sharing each pair
closes first-layer channels that carry the other pair's bar, and the layers behind them, shared, compute
functions of one bar per pair: a split where the features differ and sharing behind it.

The torso is layer-normalized (`norm="layer"`). Without it this problem is a lottery over dead units:
after 1,000 updates only 1-5 of the 8 dense units were ever positive, with hard or learned sharing,
torch or Xavier init, so the dense capacity, and with it whether conv1 split (across-pair overlap 0.5 at
one seed, 1.0 at two), changed with the seed; with it 5-7 of the 8 are alive (seeds 0 and 1). Measured with the norm on the 2-core CPU, seeds 0 / 1 / 2:
loss learned / shared 0.0191 / 0.0351, 0.0134 / 0.0374, 0.0108 / 0.0317 (0.55x, 0.36x, 0.34x); conv1
overlap within / across pairs 1.0 / 0.67, 0.88 / 0.30, 1.0 / 0.50 (mean 0.96 / 0.49); all channels pooled
0.96 / 0.88, 0.97 / 0.81, 1.0 / 0.84 (conv3 and the dense layer stay shared by both pairs). Another machine
of the same kind gave losses within 3% of these, seeds 1 and 2's overlaps equal, and seed 0's conv1 0.90 / 0.70
(mean 0.93 / 0.50). Since each game's gradient is combined as a one-game agent's (docs/multitask.md, "Many
games, one step size"), seed 2's conv1 gave 0.80 / 0.45, still split, the seeds' mean checked below.
"""

import functools

import numpy as np
import pytest
import torch

from mtdqn.agents.multitask import structure
from mtdqn.agents.core.learner import DQNLearner
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.replay import TaskBalancedReplay

K, ACTIONS, UPDATES, BATCH = 8, 8, 1000, 64
WIDTH = (0.25, 0.25, 0.25, 1 / 64)  # channels 8, 16, 16 and 8 dense units
GATES = {"gate_sparsity": 4e-3, "gate_sharing": 1e-3, "gate_lr": 0.005}
_tables = np.random.default_rng(123)
TA, TB = _tables.random((K, ACTIONS)), _tables.random((K, ACTIONS))
PERM = np.roll(np.arange(ACTIONS), ACTIONS // 2)
VALUE = [lambda r, c, a: TA[r, a], lambda r, c, a: TA[r, PERM[a]],
         lambda r, c, a: TB[c, a], lambda r, c, a: TB[c, PERM[a]]]


def frame(r: int, c: int) -> np.ndarray:
    f = np.zeros((1, 84, 84), np.uint8)
    f[0, 10 * r:10 * r + 6, :] = 255
    f[0, :, 10 * c:10 * c + 6] = 255
    return f


@functools.cache
def trained(gated: bool, seed: int):
    """Final loss (mean squared error of Q against the exact values, all frames and actions) and the network."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    replay = TaskBalancedReplay(4, capacity_per_game=3000, lanes=1, n_step=1, seed=seed)
    for g in range(4):
        for _ in range(1200):
            r, c, a = rng.integers(K), rng.integers(K), rng.integers(ACTIONS)
            replay.add(g, frame(r, c), np.array([a]), np.array([VALUE[g](r, c, a)]), np.array([True]),
                       np.array([False]), np.array([True]))
            replay.add(g, frame(r, c), np.array([0]), np.array([0.0]), np.array([False]), np.array([False]),
                       np.array([False]))
    net = MultiHeadQNetwork([ACTIONS] * 4, gated=gated, width=WIDTH, norm="layer")
    learner = DQNLearner(net, learning_rate=2e-3, target_update_period=1, **(GATES if gated else {}))
    ready = replay.ready_games(1)
    for _ in range(UPDATES):
        learner.update(replay.sample(BATCH, ready))
    net.eval()
    obs = torch.from_numpy(np.stack([np.repeat(frame(r, c), 4, 0) for r in range(K) for c in range(K)]))
    losses = []
    with torch.no_grad():
        for g in range(4):
            q = net(obs, torch.full((K * K,), g))
            target = torch.tensor([[VALUE[g](r, c, a) for a in range(ACTIONS)] for r in range(K) for c in range(K)])
            losses.append(((q - target) ** 2).mean().item())
    return float(np.mean(losses)), net


def within_across(overlap: np.ndarray) -> tuple[float, float]:
    """Mean Jaccard overlap of the pairs' own members (A1-A2, B1-B2), and of the four cross-pair couples."""
    return (overlap[0, 1] + overlap[2, 3]) / 2, overlap[:2, 2:].mean()


SEEDS = (0, 1, 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_learned_gates_split_the_pairs_where_their_features_differ_and_beat_hard_sharing_at_the_same_width(seed):
    shared_loss, _ = trained(False, seed)
    learned_loss, net = trained(True, seed)
    assert learned_loss < 0.8 * shared_loss, (learned_loss, shared_loss)
    overlap = structure.overlaps(structure.hard_gates(net))
    within, across = within_across(overlap["conv1"])
    assert within > across, ("conv1", within, across)  # how far apart: over the seeds, the test below
    within, across = within_across(overlap["all"])
    assert within >= 0.9 and within > across, ("all", within, across)


def test_over_the_seeds_conv1_overlap_is_high_within_pairs_and_low_across():
    """One seed's conv1 split turns on a channel or two, and floating-point differences between CPUs move it:
    seed 0 gave across 0.67 on one machine and 0.70 on another. The claim is about the seeds together."""
    pairs = [within_across(structure.overlaps(structure.hard_gates(trained(True, seed)[1]))["conv1"]) for seed in SEEDS]
    within, across = np.mean(pairs, axis=0)
    assert within >= 0.85 and across <= 0.6 and within >= across + 0.3, (pairs, within, across)
