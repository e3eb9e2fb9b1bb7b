"""Multi-head network: each sample is scored by its own game's head, sized to its action set."""

import numpy as np
import pytest
import torch

from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.envs import PROTOCOLS, num_actions


def test_real_games_have_different_action_counts():
    counts = [num_actions(g, PROTOCOLS["machado"]) for g in ("pong", "breakout", "ms_pacman", "battle_zone")]
    assert counts == [6, 4, 9, 18]
    net = MultiHeadQNetwork(counts)
    assert net.heads.out_features == sum(counts)
    q = net(torch.zeros(4, 4, 84, 84, dtype=torch.uint8), torch.arange(4))
    assert q.shape == (4, 18)
    for i, n in enumerate(counts):
        assert torch.isfinite(q[i, :n]).all() and torch.isinf(q[i, n:]).all() and (q[i, n:] < 0).all()


@pytest.mark.parametrize("dueling", [False, True])
def test_each_sample_is_scored_by_its_own_games_head(dueling):
    torch.manual_seed(0)
    counts = [3, 5, 2]
    net = MultiHeadQNetwork(counts, dueling=dueling)
    obs = torch.randint(0, 255, (6, 4, 84, 84), dtype=torch.uint8)
    games = torch.tensor([2, 0, 1, 1, 0, 2])
    q = net(obs, games)
    features = net.torsos[0](obs)
    offsets = np.cumsum([0] + counts)
    for i, g in enumerate(games.tolist()):
        rows = slice(offsets[g], offsets[g + 1])
        expected = features[i] @ net.heads.weight[rows].T + net.heads.bias[rows]
        if dueling:
            value = features[i] @ net.values.weight[g] + net.values.bias[g]
            expected = value + expected - expected.mean()
        torch.testing.assert_close(q[i, :counts[g]], expected)
    # the same observation scored under two games differs only through the head
    same = net(obs[:1].repeat(3, 1, 1, 1), torch.arange(3))
    torch.testing.assert_close(same[0, :3], net(obs[:1], torch.tensor([0]))[0, :3])


def test_gradients_reach_only_the_heads_of_games_in_the_batch():
    net = MultiHeadQNetwork([3, 4, 2])
    q = net(torch.randint(0, 255, (4, 4, 84, 84), dtype=torch.uint8), torch.tensor([0, 0, 2, 2]))
    q[torch.isfinite(q)].sum().backward()
    grad = net.heads.weight.grad.abs().sum(1)
    assert (grad[:3] > 0).all() and (grad[3:7] == 0).all() and (grad[7:] > 0).all()
