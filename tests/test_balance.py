"""Balancing games' losses: weighted sums and PCGrad by hand, PopArt statistics and output preservation."""

import math

import numpy as np
import pytest
import torch

from mtdqn.agents.multitask.balance import pcgrad, popart_statistics
from mtdqn.agents.core.learner import DQNLearner
from mtdqn.agents.core.network import MultiHeadQNetwork
from test_learner import batch


def test_pcgrad_projects_conflicting_gradients_by_hand():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1.g2 = -1 < 0: g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1); sum (0.5, 1.5)
    torch.testing.assert_close(pcgrad(g), torch.tensor([0.5, 1.5]))


def test_pcgrad_leaves_agreeing_gradients_alone():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(pcgrad(g), g.sum(0))


def test_pcgrad_with_three_games_projects_only_the_conflicting_pair():
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    expected = (torch.tensor([0.5, 0.5, 0.0]) + torch.tensor([0.0, 1.0, 0.0]) + torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(pcgrad(g, torch.Generator().manual_seed(3)), expected)


def test_popart_statistics_by_hand():
    mu, nu = torch.zeros(3), torch.ones(3)
    targets, game = torch.tensor([2.0, 4.0, 10.0]), torch.tensor([0, 0, 1])
    mu, nu, sigma = popart_statistics(mu, nu, targets, game, beta=0.5)
    torch.testing.assert_close(mu, torch.tensor([1.5, 5.0, 0.0]))
    torch.testing.assert_close(nu, torch.tensor([0.5 + 0.5 * 10.0, 0.5 + 0.5 * 100.0, 1.0]))
    torch.testing.assert_close(sigma, torch.tensor([math.sqrt(5.5 - 2.25), math.sqrt(50.5 - 25.0), 1.0]))


@pytest.mark.parametrize("dueling", [False, True])
def test_popart_keeps_unnormalized_outputs_when_its_statistics_move(dueling):
    torch.manual_seed(0)
    learner = DQNLearner(MultiHeadQNetwork([3, 5], dueling=dueling, popart=True), balance="popart",
                         popart_beta=0.3, reward_clip=False)
    x, games = torch.randint(0, 255, (4, 4, 84, 84), dtype=torch.uint8), torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        before, before_target = learner.online(x, games), learner.target(x, games)
        normalized = learner.online.normalized(x, games)
    for targets in ([50.0, -20.0, 300.0, 8.0], [-1000.0, 0.5, 0.5, 2000.0]):
        learner._popart_step(torch.tensor(targets), games)
    net = learner.online
    assert (net.popart_sigma > 10).all() and not torch.allclose(net.popart_mu, torch.zeros(2))
    with torch.no_grad():
        torch.testing.assert_close(net(x, games), before, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(learner.target(x, games), before_target, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(net.normalized(x, games)[:, :3], normalized[:, :3])


def test_popart_learner_trains_on_normalized_targets():
    learner = DQNLearner(MultiHeadQNetwork([2, 2], popart=True), balance="popart", popart_beta=1.0,
                         reward_clip=False)
    # terminated one-step targets 100 (game 0, twice) and -4 (game 1): with beta 1 each game's mu is its
    # batch mean and sigma is floored (zero variance), so normalized targets are 0 and the loss is the
    # Huber loss of the normalized outputs themselves
    b = batch(rewards=[[100.0, 0, 0], [100.0, 0, 0], [-4.0, 0, 0]], terminated=[True] * 3, steps=[1] * 3,
              game=[0, 0, 1])
    out = learner.update(b)
    torch.testing.assert_close(learner.online.popart_mu, torch.tensor([100.0, -4.0]))
    assert torch.isfinite(out["loss"]) and learner.popart_nu[0].item() == pytest.approx(10000.0)


def test_weighted_balance_is_the_weighted_sum_of_per_game_losses():
    net = MultiHeadQNetwork([2, 2])
    with torch.no_grad():
        net.heads.weight.zero_()
        net.heads.bias.zero_()
    learner = DQNLearner(net, balance="weighted", task_weights=[2.0, 1.0], reward_clip=False)
    b = batch(rewards=[[0.5, 0, 0]] * 3 + [[3.0, 0, 0]], terminated=[True] * 4, steps=[1] * 4, game=[0, 0, 0, 1])
    out = learner.update(b)
    torch.testing.assert_close(out["per_game_loss"], torch.tensor([0.125, 2.5]))
    torch.testing.assert_close(out["loss"], torch.tensor(2 * 0.125 + 2.5))


def test_pcgrad_learner_sets_projected_torso_gradients_and_summed_head_gradients():
    """The torso gets PCGrad's sum of the two games' gradients, rescaled channel by channel to the mean of
    their norms (one game's gradient size, multitask/balance.py `combine`); each head its own game's."""
    torch.manual_seed(0)
    learner = DQNLearner(MultiHeadQNetwork([2, 3]), balance="pcgrad", reward_clip=False, max_grad_norm=0)
    b = batch(rewards=[[1.0, 0, 0], [-2.0, 0, 0], [5.0, 0, 0], [0.3, 0, 0]], terminated=[True] * 4,
              steps=[1] * 4, game=[0, 1, 1, 0], action=[0, 2, 1, 1])
    b.obs = np.random.default_rng(0).integers(0, 255, b.obs.shape).astype(np.uint8)
    tensors = learner._tensors(b)
    target = learner.td_targets(*tensors[2:])
    per_game, _, _ = learner.per_game_losses(tensors[0], tensors[1], target, tensors[6])
    shared = learner.online.shared_parameters()
    per = [torch.autograd.grad(per_game[k], shared, retain_graph=True) for k in range(2)]
    grads = [torch.cat([g.flatten() for g in gs]) for gs in per]
    assert grads[0] @ grads[1] != 0
    head = torch.autograd.grad(per_game.sum(), learner.online.heads.weight, retain_graph=True)[0]
    projected = torch.split(pcgrad(torch.stack(grads)), [p.numel() for p in shared])
    learner.optimizer.zero_grad()
    losses, _ = learner._chunk_losses(*tensors[:2], target, tensors[6], [(0, np.array([0, 3])), (1, slice(1, 3))])
    learner._backward(losses, None)
    def rows(x):  # each output channel's norm
        return torch.linalg.vector_norm(x.reshape(len(x), -1), dim=1)

    for p, part, g0, g1 in zip(shared, projected, *per):
        part = part.view_as(p)
        readers = (rows(g0) > 0).float() + (rows(g1) > 0).float()
        scale = torch.where(readers > 1, (rows(g0) + rows(g1)) / 2 / rows(part), 1.0)
        torch.testing.assert_close(p.grad, part * scale.view(-1, *[1] * (p.dim() - 1)), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(learner.online.heads.weight.grad, head)


def test_popart_needs_a_popart_network():
    with pytest.raises(ValueError, match="popart"):
        DQNLearner(MultiHeadQNetwork([2]), balance="popart")
    with pytest.raises(ValueError, match="unknown balance"):
        DQNLearner(MultiHeadQNetwork([2]), balance="mean")
