"""Sharing modes: which torso each game reads, where gradients go, soft coupling, old checkpoints."""

import pytest
import torch

from mtdqn.agents.core.network import MultiHeadQNetwork


def obs(n=6, seed=0):
    return torch.randint(0, 255, (n, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("torso_of", [[0, 0, 0], [0, 1, 2], [0, 1, 0]], ids=["shared", "separate", "grouped"])
def test_each_game_reads_its_own_torso(torso_of):
    torch.manual_seed(0)
    net = MultiHeadQNetwork([3, 5, 2], torso_of=torso_of)
    assert len(net.torsos) == max(torso_of) + 1
    x, games = obs(), torch.tensor([2, 0, 1, 1, 0, 2])
    features = net.features(x, games)
    for i, g in enumerate(games.tolist()):
        torch.testing.assert_close(features[i], net.torsos[torso_of[g]](x[i:i + 1])[0])


def test_separate_networks_get_gradients_only_from_their_game():
    net = MultiHeadQNetwork([3, 5, 2], torso_of=[0, 1, 2])
    q = net(obs(4), torch.tensor([0, 0, 2, 2]))
    q[torch.isfinite(q)].sum().backward()
    touched = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in t.parameters()) for t in net.torsos]
    assert touched == [True, False, True]


def test_soft_sharing_starts_equal_and_penalizes_distance_from_the_mean():
    net = MultiHeadQNetwork([3, 2], torso_of=[0, 1], tied_init=True)
    for a, b in zip(net.torsos[0].parameters(), net.torsos[1].parameters()):
        assert torch.equal(a, b)
    assert net.soft_penalty().item() == 0.0
    with torch.no_grad():
        list(net.torsos[1].parameters())[-1][:4] += torch.tensor([1.0, 2.0, 0.0, -2.0])
    # two torsos at distance d from each other are each d/2 from their mean: sum = 2 * (d/2)^2 = d^2 / 2
    assert net.soft_penalty().item() == pytest.approx((1 + 4 + 0 + 4) / 2)
    separate = MultiHeadQNetwork([3, 2], torso_of=[0, 1])
    assert separate.soft_penalty().item() > 0  # independent initialisations
    assert MultiHeadQNetwork([3, 2]).soft_penalty().item() == 0.0


def test_torso_assignment_must_cover_every_game():
    with pytest.raises(ValueError, match="torso index"):
        MultiHeadQNetwork([3, 2], torso_of=[0])
    with pytest.raises(ValueError, match="every index"):
        MultiHeadQNetwork([3, 2], torso_of=[0, 2])


def test_a_checkpoint_from_before_per_group_torsos_still_loads():
    net = MultiHeadQNetwork([3, 2])
    old = {k.replace("torsos.0.", "torso."): v for k, v in net.state_dict().items()}
    assert any(k.startswith("torso.") for k in old)
    fresh = MultiHeadQNetwork([3, 2])
    fresh.load_state_dict(old)
    x = obs(2)
    torch.testing.assert_close(fresh(x, torch.tensor([0, 1])), net(x, torch.tensor([0, 1])))


def test_spec_rebuilds_the_same_architecture():
    net = MultiHeadQNetwork([3, 5, 2], dueling=True, torso_of=[0, 1, 0], popart=True)
    clone = MultiHeadQNetwork(**net.spec())
    clone.load_state_dict(net.state_dict())
    x, games = obs(3), torch.tensor([0, 1, 2])
    torch.testing.assert_close(clone(x, games), net(x, games))
