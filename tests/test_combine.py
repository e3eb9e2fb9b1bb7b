"""Every game's gradient treated as a one-game agent's: `combine` by hand, `--sharing separate` as
exactly G independent agents, and clipping that keeps one game's spike out of another's step."""

import copy
import math

import numpy as np
import pytest
import torch

from mtdqn.agents.core.learner import DQNLearner
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.replay import Batch
from mtdqn.agents.multitask.balance import combine, game_chunks, pcgrad


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def one_seed(grads, **options):
    """`combine` for one agent: its seed axis of 1 added, then taken off."""
    combined, norms = combine({g: [None if x is None else x[None] for x in xs] for g, xs in grads.items()}, **options)
    return [None if x is None else x[0] for x in combined], {g: n[0] for g, n in norms.items()}


def test_seeds_are_combined_each_on_its_own():
    """A seed batch's gradients combined at once equal each seed's combined alone."""
    gen = torch.Generator().manual_seed(0)
    seeds = [{g: [torch.randn(3, 2, generator=gen) * (1 + 5 * g), torch.randn(3, generator=gen), None if g else
                  torch.randn(2, generator=gen)] for g in range(2)} for _ in range(3)]
    stacked = {g: [None if seeds[0][g][i] is None else torch.stack([s[g][i] for s in seeds]) for i in range(3)]
               for g in range(2)}
    combined, norms = combine(stacked, shared={0}, max_norm=4.0, weights={0: 1.0, 1: 0.5})
    for s, grads in enumerate(seeds):
        alone, alone_norms = one_seed(grads, shared={0}, max_norm=4.0, weights={0: 1.0, 1: 0.5})
        for x, y in zip(combined, alone):
            torch.testing.assert_close(x[s], y)
        assert [float(n[s]) for n in norms.values()] == pytest.approx([float(n) for n in alone_norms.values()])


def test_chunks_are_slices_where_a_game_is_contiguous():
    chunks = game_chunks(np.array([0, 0, 2, 2, 2, 1, 0]))
    assert [g for g, _ in chunks] == [0, 1, 2]
    assert chunks[1][1] == slice(5, 6) and chunks[2][1] == slice(2, 5)
    assert chunks[0][1].tolist() == [0, 1, 6]


def test_a_shared_parameter_takes_the_sum_rescaled_row_by_row_to_the_games_mean_norm():
    # parameter 0: a shared torso layer of 2 output channels (rows); 1: a head whose rows the games own;
    # 2: a torso only game 1 reads
    grads = {0: [t(3, 4, 1, 0).view(2, 2), t(1, 0), None], 1: [t(0, 2, 0, 0).view(2, 2), t(0, 1), t(2, 0)]}
    combined, norms = one_seed(grads, shared={0})
    # row 0: both games reach it, norms 5 and 2: their sum (3, 6) rescaled to norm 3.5
    torch.testing.assert_close(combined[0][0], t(3, 6) * 3.5 / math.sqrt(45))
    # row 1: only game 0 reaches it (learned sharing's own channel): its gradient whole
    torch.testing.assert_close(combined[0][1], t(1, 0))
    torch.testing.assert_close(combined[1], t(1, 1))
    torch.testing.assert_close(combined[2], t(2, 0))
    torch.testing.assert_close(norms[0], torch.tensor(math.sqrt(27.0)))
    torch.testing.assert_close(norms[1], torch.tensor(3.0))


def test_each_game_is_clipped_by_its_own_norm_then_weighted():
    grads = {0: [t(3, 4).view(1, 2), t(1, 0)], 1: [t(0, 2).view(1, 2), t(0, 1)]}
    combined, _ = one_seed(grads, shared={0}, max_norm=2.0, weights={0: 1.0, 1: 3.0})
    c0, c1 = 2 / (math.sqrt(26) + 1e-6), 3 * 2 / (math.sqrt(5) + 1e-6)
    torso = t(3, 4) * c0 + t(0, 2) * c1
    torch.testing.assert_close(combined[0][0], torso * ((5 * c0 + 2 * c1) / 2) / torso.norm())
    torch.testing.assert_close(combined[1], t(c0, c1))
    # a game under the threshold is untouched
    combined, _ = one_seed({0: [t(0.3, 0.4)]}, shared=set(), max_norm=2.0)
    torch.testing.assert_close(combined[0], t(0.3, 0.4))


def test_pcgrad_projects_the_shared_parameters_then_rescales():
    grads = {0: [t(1, 0).view(1, 2), t(5, 0)], 1: [t(-1, 1).view(1, 2), t(0, 7)]}
    combined, _ = one_seed(grads, shared={0}, project=True)
    projected = t(0.5, 0.5) + t(0, 1)  # each projected off the other (they conflict: dot -1)
    torch.testing.assert_close(pcgrad(torch.stack([t(1, 0), t(-1, 1)])), projected)
    torch.testing.assert_close(combined[0][0], projected * ((1 + math.sqrt(2)) / 2) / projected.norm())
    torch.testing.assert_close(combined[1], t(5, 7))


@pytest.mark.parametrize("options", [dict(balance="pcgrad"), dict(gated=True)])
def test_gradients_keep_their_parameters_memory_layout(options):
    """Fused Adam reads a gradient in its parameter's layout: PCGrad's flat sum and a pruned layer's index
    backward give other layouts, which must be laid out as the (channels-last) convolutions are."""
    torch.manual_seed(0)
    net = MultiHeadQNetwork([4, 4], width=0.25, gated=options.get("gated", False))
    learner = DQNLearner(net, balance=options.get("balance", "equal"))
    if net.gated:
        with torch.no_grad():
            net.gate_logits[1][:, :4] = -5.0  # conv2's first 4 channels closed for both games: pruned
        learner.freeze_gates()
        assert net.kept_channels() is not None
    rng = np.random.default_rng(0)
    learner.update(joined(game_batch(rng, 0, 8, 4), game_batch(rng, 1, 8, 4)))
    for p in net.parameters():
        if p.grad is not None:
            assert p.grad.stride() == p.stride()


# -- separate sharing is G independent agents ---------------------------------------------------------
def frames(rng, n):
    return rng.integers(0, 256, (n, 4, 84, 84)).astype(np.uint8)


def game_batch(rng, game: int, n: int, actions: int) -> Batch:
    return Batch(obs=frames(rng, n), action=rng.integers(0, actions, n), rewards=rng.normal(0, 3, (n, 3)).astype(np.float32),
                 terminated=rng.random(n) < 0.3, steps=np.full(n, 3), next_obs=frames(rng, n), game=np.full(n, game))


def joined(a: Batch, b: Batch) -> Batch:
    return Batch(**{k: np.concatenate([getattr(a, k), getattr(b, k)]) for k in Batch.__dataclass_fields__})


@pytest.mark.parametrize("balance, precision, dueling", [("equal", "fp32", False), ("pcgrad", "fp32", True),
                                                         ("popart", "fp32", True), ("equal", "bf16", True)])
def test_a_separate_run_is_two_independent_agents_fed_the_same_batches(balance, precision, dueling):
    """Clipping at 0.1 is active on every update (TD errors of several units): with one global clip the
    two games' steps were coupled, and one game's larger gradient shrank the other's step."""
    counts = [6, 4]
    options = dict(balance=balance, precision=precision, max_grad_norm=0.1, reward_clip=False,
                   target_update_period=2, popart_beta=0.1)
    torch.manual_seed(1)
    alone = [DQNLearner(MultiHeadQNetwork([n], dueling=dueling, popart=balance == "popart", width=0.25),
                        **options) for n in counts]
    both = DQNLearner(MultiHeadQNetwork(counts, dueling=dueling, torso_of=[0, 1], popart=balance == "popart",
                                        width=0.25), **options)
    with torch.no_grad():  # the pair starts from the two agents' weights
        for k, agent in enumerate(alone):
            both.online.torsos[k].load_state_dict(agent.online.torsos[0].state_dict())
        both.online.heads.weight.copy_(torch.cat([a.online.heads.weight for a in alone]))
        both.online.heads.bias.copy_(torch.cat([a.online.heads.bias for a in alone]))
        if dueling:
            both.online.values.weight.copy_(torch.cat([a.online.values.weight for a in alone]))
            both.online.values.bias.copy_(torch.cat([a.online.values.bias for a in alone]))
        both.target.load_state_dict(both.online.state_dict())
    rng = np.random.default_rng(0)
    norms = []
    for _ in range(4):
        parts = [game_batch(rng, 0, 8, 6), game_batch(rng, 1, 8, 4)]
        out = both.update(joined(*parts))
        norms.append(out["per_game_grad_norm"])
        for k, agent in enumerate(alone):
            one = copy.copy(parts[k])
            one.game = np.zeros_like(one.game)
            solo = agent.update(one)
            torch.testing.assert_close(out["per_game_grad_norm"][k], solo["per_game_grad_norm"][0])
    assert torch.stack(norms).min() > 0.1  # clipping was active on every update of both games
    tol = dict(rtol=0, atol=1e-6)
    for k, agent in enumerate(alone):
        for a, b in zip(both.online.torsos[k].parameters(), agent.online.torsos[0].parameters()):
            torch.testing.assert_close(a, b, **tol)
    rows = torch.split(both.online.heads.weight, counts)
    for k, agent in enumerate(alone):
        torch.testing.assert_close(rows[k], agent.online.heads.weight, **tol)
        if balance == "popart":
            torch.testing.assert_close(both.online.popart_sigma[k:k + 1], agent.online.popart_sigma, **tol)


def test_one_games_spike_leaves_another_games_head_step_alone():
    """Shared torso, two games: game 1's head scaled x1000 (its gradient into the torso with it) changes
    nothing of game 0's head update (its own gradient, clipped by its own norm), though it moves the
    shared torso differently. With one clip over the sum, game 1's spike shrank game 0's step."""
    rng = np.random.default_rng(0)
    batch = joined(game_batch(rng, 0, 8, 6), game_batch(rng, 1, 8, 4))
    heads, torsos = [], []
    for spike in (1.0, 1000.0):
        torch.manual_seed(0)
        learner = DQNLearner(MultiHeadQNetwork([6, 4], width=0.25), max_grad_norm=1.0, reward_clip=False)
        with torch.no_grad():
            learner.online.heads.weight[6:] *= spike
            learner.target.load_state_dict(learner.online.state_dict())
        out = learner.update(batch)
        heads.append(learner.online.heads.weight[:6].detach().clone())
        torsos.append(learner.online.torsos[0].net[0].weight.detach().clone())
    assert out["per_game_grad_norm"][1] > 100 * out["per_game_grad_norm"][0]
    torch.testing.assert_close(heads[0], heads[1], rtol=0, atol=0)
    assert not torch.equal(torsos[0], torsos[1])
