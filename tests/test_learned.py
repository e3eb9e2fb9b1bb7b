"""Learned sharing: per-game channel gates, exactly hard sharing at the start, the penalties by hand,
the freeze, the width option, and gates carried by spec and state dict."""

from unittest import mock

import pytest
import torch

from mtdqn.agents.core.learner import DQNLearner
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.multitask.gates import GATE_INIT, hard_gate, sharing_cost, sparsity_cost, straight_through_gate
from test_learner import batch


def obs(n=6, seed=0):
    return torch.randint(0, 255, (n, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


GAMES = torch.tensor([2, 0, 1, 1, 0, 2])


def test_a_fresh_learned_network_is_exactly_a_shared_network_with_the_same_weights():
    torch.manual_seed(0)
    learned = MultiHeadQNetwork([3, 5, 2], gated=True)
    shared = MultiHeadQNetwork([3, 5, 2])
    missing = shared.load_state_dict(learned.state_dict(), strict=False)
    assert set(missing.unexpected_keys) == {f"gate_logits.{k}" for k in range(4)} | {"gates_frozen"}
    assert not missing.missing_keys
    x = obs()
    reference = shared(x, GAMES)
    for _ in range(3):  # sampled gates in training mode with a gradient: still all open, bit for bit
        assert torch.equal(learned(x, GAMES), reference)
    with torch.no_grad():
        assert torch.equal(learned(x, GAMES), reference)
    assert all(torch.equal(g, torch.ones_like(g)) for g in learned.hard_gates())
    assert [tuple(g.shape) for g in learned.hard_gates()] == [(3, 32), (3, 64), (3, 64), (3, 512)]


def test_straight_through_gates_are_0_1_forward_and_pass_the_sigmoid_gradient_back():
    torch.manual_seed(0)
    logits = torch.tensor([[-10.0, -0.1, 0.1, 10.0]], requires_grad=True)
    samples = torch.stack([straight_through_gate(logits) for _ in range(200)])
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    assert samples[:, 0, 0].sum() == 0 and samples[:, 0, 3].min() == 1  # beyond the noise bound: sure
    assert 0 < samples[:, 0, 1].mean() < 1 and 0 < samples[:, 0, 2].mean() < 1  # near 0: either way
    straight_through_gate(logits).sum().backward()
    assert (logits.grad > 0).all()  # d/da sigmoid(a + n) > 0 everywhere


def test_no_game_closes_a_whole_layer():
    # game 1 has every logit of every layer below 0: it keeps its highest-logit channel of each, sampled or hard
    logits = torch.tensor([[1.0, -2.0, 0.5], [-4.0, -1.5, -3.0]])
    assert hard_gate(logits).tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    torch.manual_seed(0)  # -4 and -3 are below the noise bound (-2.5): sampled, the row is exactly the hard one
    assert all(straight_through_gate(logits)[1].tolist() == [0.0, 1.0, 0.0] for _ in range(50))
    net = MultiHeadQNetwork([3, 5], gated=True, width=0.25)
    with torch.no_grad():
        for a in net.gate_logits:
            a[1] = -GATE_INIT - torch.rand(a.shape[1])  # beyond the noise bound: closed but for the top one
    assert [int(g[1].sum()) for g in net.hard_gates()] == [1, 1, 1, 1]
    sampled = net.gates()  # training mode, with a gradient: the straight-through samples
    assert [int(g[1].sum()) for g in sampled] == [1, 1, 1, 1]
    assert all(g[1, a[1].argmax()] == 1 for g, a in zip(sampled, net.gate_logits))


def test_sparsity_cost_by_hand():
    # two games, a 4-channel and a 2-channel layer: each game pays the fraction of each layer it keeps
    probs = [torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.5, 0.5, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])]
    assert sparsity_cost(probs).item() == pytest.approx((0.5 + 0.5) + (0.5 + 0.0))


def test_sharing_cost_by_hand():
    # three games on one 2-channel layer: pairs (0,1) |1-0|,|0-1| -> mean 1; (0,2) |1-1|,|0-0.5| -> 0.25;
    # (1,2) |0-1|,|1-0.5| -> 0.75
    probs = [torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5]])]
    assert sharing_cost(probs).item() == pytest.approx(1.0 + 0.25 + 0.75)
    assert sharing_cost([torch.full((4, 3), 0.3)]).item() == 0.0  # the same channels: nothing to pay


def test_penalties_alone_close_gates_and_the_sharing_cost_pulls_games_together():
    """Zero TD error (constant Q, terminal zero rewards): the only gradient on the gates is the penalties'."""
    torch.manual_seed(0)
    net = MultiHeadQNetwork([2, 2], gated=True, width=0.25)
    with torch.no_grad():
        net.heads.weight.zero_()
        net.heads.bias.zero_()
        net.gate_logits[0][1] = -1.0  # game 1 starts with conv1 closed: the sharing cost should reopen it
    learner = DQNLearner(net, gate_sparsity=1.0, gate_sharing=0.0, gate_lr=0.1)
    b = batch(rewards=[[0.0, 0, 0]] * 2, terminated=[True] * 2, steps=[1] * 2, game=[0, 1])
    out = learner.update(b)
    assert out["gate_sparsity"].item() > 0 and out["gate_sharing"].item() > 0
    assert (net.gate_logits[3] < GATE_INIT).all()  # every logit moved toward closing
    sharing = DQNLearner(MultiHeadQNetwork([2, 2], gated=True, width=0.25), gate_sparsity=0.0, gate_sharing=1.0,
                         gate_lr=0.1)
    with torch.no_grad():
        sharing.online.gate_logits[0][1] = -1.0
    sharing.update(b)
    logits = sharing.online.gate_logits[0]
    assert (logits[1] > -1.0).all() and (logits[0] < GATE_INIT).all()  # the two games move toward each other


def test_after_the_freeze_gates_are_exactly_0_1_and_outputs_deterministic():
    torch.manual_seed(0)
    net = MultiHeadQNetwork([3, 5, 2], gated=True, width=0.5)
    with torch.no_grad():
        for a in net.gate_logits:
            a.uniform_(-1, 1)  # near 0: sampled gates flip from one forward to the next
    x = obs()
    assert not torch.equal(net(x, GAMES), net(x, GAMES))
    learner = DQNLearner(net, balance="pcgrad", gate_sparsity=1.0, gate_sharing=1.0)
    before = [a.detach().clone() for a in net.gate_logits]
    learner.freeze_gates()
    assert bool(net.gates_frozen)
    first = net(x, GAMES)
    assert torch.equal(first, net(x, GAMES))
    for g, a in zip(net.gates(), before):
        assert torch.equal(g, hard_gate(a))
    b = batch(rewards=[[1.0, 0, 0]] * 3, terminated=[True] * 3, steps=[1] * 3, game=[0, 1, 2])
    for _ in range(3):  # PCGrad hands the frozen logits zero gradients: Adam must still not move them
        learner.update(b)
    assert all(torch.equal(a, old) for a, old in zip(net.gate_logits, before))
    assert all(p.item() == 0 for p in net.gate_penalties())


def test_a_polyak_target_takes_the_frozen_gates_and_keeps_them():
    torch.manual_seed(0)
    net = MultiHeadQNetwork([3, 2], gated=True, width=0.25)
    learner = DQNLearner(net, target_tau=0.5)
    with torch.no_grad():
        for a in net.gate_logits:
            a.uniform_(-1, 1)  # the target still has the old, all-open logits
    learner.freeze_gates()
    b = batch(rewards=[[1.0, 0, 0]] * 2, terminated=[True] * 2, steps=[1] * 2, game=[0, 1])
    for _ in range(3):
        learner.update(b)
    for online, target in zip(net.gate_logits, learner.target.gate_logits):
        assert torch.equal(online, target)
    x, games = obs(4), torch.tensor([0, 1, 1, 0])
    with torch.no_grad():  # the channels the target computes are those its gates keep
        pruned = learner.target(x, games)
        learner.target._kept = []  # nothing pruned: every channel computed and masked
        torch.testing.assert_close(pruned, learner.target(x, games))


def test_the_freeze_survives_a_state_dict_round_trip():
    net = MultiHeadQNetwork([3, 2], gated=True)
    learner = DQNLearner(net)
    learner.freeze_gates()
    fresh = DQNLearner(MultiHeadQNetwork(**net.spec()))
    fresh.load_state_dict(learner.state_dict())
    assert bool(fresh.online.gates_frozen) and fresh.optimizer.param_groups[1]["lr"] == 0.0


def test_torso_width_multiplies_every_layer():
    net = MultiHeadQNetwork([3, 2], gated=True, width=2)
    assert net.torsos[0].channels == (64, 128, 128, 1024)
    assert net.heads.in_features == 1024 and net.gate_logits[3].shape == (2, 1024)
    assert net(obs(2), torch.tensor([0, 1])).shape == (2, 3)
    assert MultiHeadQNetwork([3], width=0.25).torsos[0].channels == (8, 16, 16, 128)
    with pytest.raises(ValueError, match="width"):
        MultiHeadQNetwork([3], width=0)


def test_layers_can_have_widths_of_their_own_and_the_checkpoint_rebuilds_them(tmp_path):
    from mtdqn.agents.core import checkpoint

    net = MultiHeadQNetwork([3, 2], gated=True, width=(0.25, 0.25, 0.25, 1 / 64))
    assert net.torsos[0].channels == (8, 16, 16, 8) and net.heads.in_features == 8
    assert MultiHeadQNetwork([3], width=[0.5] * 4).width == 0.5  # four equal widths are one
    path = checkpoint.save({"network": net.spec(), "online": net.state_dict()}, tmp_path / "net.pt")
    state = checkpoint.load(path)
    clone = MultiHeadQNetwork(**state["network"])
    clone.load_state_dict(state["online"])
    assert clone.torsos[0].channels == (8, 16, 16, 8)
    x, games = obs(2), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.equal(clone(x, games), net(x, games))
    for bad in ((1, 1, 1), (1, 1, -1, 1), True, "1", (1, 1, 1, None)):
        with pytest.raises(ValueError, match="torso width must be a number > 0 or four"):
            MultiHeadQNetwork([3], width=bad)
    with pytest.raises(ValueError, match="all zeros"):
        MultiHeadQNetwork([3, 2], torso_of=[0, 1], gated=True)


def test_spec_rebuilds_a_gated_network_and_old_specs_still_build():
    net = MultiHeadQNetwork([3, 5], gated=True, width=0.5, dueling=True)
    with torch.no_grad():
        net.gate_logits[1][0, :10] = -2.0
    clone = MultiHeadQNetwork(**net.spec())
    clone.load_state_dict(net.state_dict())
    x, games = obs(2), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(clone(x, games), net(x, games))
    old = {k: v for k, v in MultiHeadQNetwork([3, 5]).spec().items() if k not in ("gated", "width")}
    assert not MultiHeadQNetwork(**old).gated  # a checkpoint from before learned sharing


def test_ray_actors_act_with_the_learners_gates():
    """An actor rebuilds the gated network from network_spec and acts with the learner's hard gates."""
    import numpy as np

    from mtdqn.agents.training.config import TrainConfig
    from mtdqn.agents.distributed.ray_trainer import ActorWorker
    from mtdqn.agents.training.build import build_learner
    from mtdqn.envs import PROTOCOLS

    cfg = TrainConfig(suite="pong,breakout", sharing="learned", torso_width=0.5)
    learner = build_learner(cfg, ["pong", "breakout"], [6, 4])
    with torch.no_grad():
        learner.online.gate_logits[3][1, :100] = -1.0  # breakout drops dense channels
    worker = ActorWorker(["breakout"], [1], 1, PROTOCOLS["machado"].to_dict(), learner.online.spec(), 1, "fp32")
    weights = {k: v.numpy() for k, v in learner.online.state_dict().items()}
    worker.collect(2, np.zeros(2), generation=0, seed=1, weights=weights, version=0)
    assert worker.network.gated and torch.equal(worker.network.gate_logits[3], learner.online.gate_logits[3])
    x = torch.from_numpy(worker.actor.obs)
    with torch.no_grad():
        torch.testing.assert_close(worker.policy(x, torch.zeros(1, dtype=torch.long)),
                                   learner.online(x, torch.ones(1, dtype=torch.long)))


@pytest.mark.parametrize("field, value, message", [
    ("torso_width", 0.0, "--torso-width must be > 0"), ("gate_lr", 0.0, "--gate-lr must be > 0"),
    ("gate_sparsity", -1.0, "--gate-sparsity must be >= 0"), ("gate_freeze_frames", -5, "--gate-freeze-frames must be >= 0"),
])
def test_bad_gate_options_are_refused(field, value, message):
    from mtdqn.agents.training.config import ConfigError, TrainConfig
    from mtdqn.agents.training.validate import validate

    with pytest.raises(ConfigError, match=message):
        validate(TrainConfig(suite="pong", sharing="learned", **{field: value}))


def test_conflict_measurements_see_the_hard_gates():
    """TAG's losses before and after a lookahead step compare one structure, not two gate samples."""
    import numpy as np

    from mtdqn.agents.multitask import conflict
    from test_conflict import two_task_learner

    learner, b = two_task_learner([[1.0, -1.0], [1.0, -1.0]])
    gated = MultiHeadQNetwork([2, 2], gated=True, width=0.25)
    with torch.no_grad():
        for a in gated.gate_logits:
            a.uniform_(-1, 1)  # sampled gates would differ from one loss to the next
    learner = DQNLearner(gated, reward_clip=False)
    first, second = (conflict.measure(learner, b, 0.01) for _ in range(2))
    np.testing.assert_array_equal(first.affinity, second.affinity)
    assert gated.training


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_after_the_freeze_channels_no_game_keeps_are_not_computed(padding):
    torch.manual_seed(0)
    net = MultiHeadQNetwork([3, 5, 2], dueling=True, gated=True, padding=padding)
    with torch.no_grad():
        for a in net.gate_logits:
            a.copy_(torch.randn_like(a) * 3 - 1.5)  # about a third of each layer closed for all three games
    assert net.kept_channels() is None  # gates still training: nothing is pruned
    net.freeze_gates()
    used = [g.any(0) for g in net.hard_gates()]
    kept = net.kept_channels()
    assert [k.tolist() for k in kept] == [u.nonzero().flatten().tolist() for u in used]
    assert all(0 < len(k) < len(u) for k, u in zip(kept, used))
    x, masks = obs(), [g[GAMES] for g in net.hard_gates()]
    torso = net.torsos[0]
    assert torch.allclose(torso(x, masks, kept), torso(x, masks), atol=1e-6, rtol=0)  # masking's values
    pruned_q = net(x, GAMES)
    with mock.patch.object(net, "kept_channels", return_value=None):  # the same network, masking only
        assert torch.allclose(pruned_q, net(x, GAMES), atol=1e-6, rtol=0)
    dead = (~used[-1]).nonzero().flatten()
    assert torch.equal(torso(x, masks, kept)[:, dead], torch.zeros(len(x), len(dead)))


def test_a_frozen_half_pruned_update_costs_a_fraction_of_the_flops_and_layer_norm_is_not_pruned():
    """Every game keeping the same half of each layer: conv2, conv3 and the dense layer compute a quarter
    of their products (half the inputs, half the outputs), conv1 half; the heads read all 512 (zeros)."""
    from mtdqn.agents.bench.update_cost import VARIANTS, build, flops, random_batch

    b = random_batch(4)
    hard = flops(build(VARIANTS["4 games, hard sharing (Nature torso, target network)"]), b)
    training = flops(build(VARIANTS["4 games, learned sharing, gates training"]), b)
    pruned = flops(build(VARIANTS["4 games, learned sharing, frozen, half of each layer pruned"]), b)
    assert training == hard  # gates multiply; they add no convolution or matmul
    assert 0.25 < pruned / hard < 0.4, pruned / hard
    net = MultiHeadQNetwork([3, 2], gated=True, norm="layer")
    with torch.no_grad():
        net.gate_logits[0][:, :4] = -GATE_INIT
    net.freeze_gates()
    assert net.kept_channels() is None  # its statistics run over every channel
