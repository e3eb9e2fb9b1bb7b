"""Gradient conflict and TAG affinity: opposite tasks conflict, agreeing tasks help, CSV round trips."""

import numpy as np
import pytest
import torch

from mtdqn.agents.multitask import conflict
from mtdqn.agents.core.learner import DQNLearner
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.replay import TaskBalancedReplay


def two_task_learner(rewards: list[list[float]], torso_of=(0, 0)):
    """Two games seeing the same frames, 2 actions each, one-step episodes with rewards[g][a]."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    replay = TaskBalancedReplay(2, capacity_per_game=600, lanes=1, n_step=1, seed=0)
    frame = rng.integers(0, 255, (1, 84, 84)).astype(np.uint8)
    for g in range(2):
        for _ in range(200):
            a = int(rng.integers(2))
            replay.add(g, frame, np.array([a]), np.array([rewards[g][a]]), np.array([True]), np.array([False]),
                       np.array([True]))
            replay.add(g, frame, np.array([0]), np.array([0.0]), np.array([False]), np.array([False]),
                       np.array([False]))
    net = MultiHeadQNetwork([2, 2], torso_of=list(torso_of), tied_init=True)
    with torch.no_grad():  # identical heads: only the tasks' rewards differ
        net.heads.weight[2:] = net.heads.weight[:2]
        net.heads.bias[2:] = net.heads.bias[:2]
    learner = DQNLearner(net, reward_clip=False)
    return learner, replay.sample(64, [0, 1])


def test_tasks_wanting_opposite_actions_conflict_and_agreeing_tasks_help_each_other():
    opposite = conflict.measure(*two_task_learner([[1.0, -1.0], [-1.0, 1.0]]), lookahead_lr=0.01)
    agreeing = conflict.measure(*two_task_learner([[1.0, -1.0], [1.0, -1.0]]), lookahead_lr=0.01)
    assert opposite.cosine[0, 1] < -0.9 and agreeing.cosine[0, 1] > 0.9
    np.testing.assert_allclose(np.diag(opposite.cosine), [1.0, 1.0], atol=1e-5)
    assert opposite.cosine[0, 1] == pytest.approx(opposite.cosine[1, 0])
    for i, j in ((0, 1), (1, 0)):  # a step on i's loss raises j's loss when they conflict, lowers it when not
        assert opposite.affinity[i, j] < 0 < agreeing.affinity[i, j]
    assert (np.diag(opposite.affinity) > 0).all()  # a step on a game's own loss lowers it


def test_games_that_share_no_torso_neither_conflict_nor_transfer():
    separate = conflict.measure(*two_task_learner([[1.0, -1.0], [-1.0, 1.0]], torso_of=(0, 1)), lookahead_lr=0.01)
    assert separate.cosine[0, 1] == 0.0 and separate.affinity[0, 1] == 0.0 and separate.affinity[1, 0] == 0.0


def test_measuring_leaves_the_network_unchanged():
    learner, batch = two_task_learner([[1.0, -1.0], [-1.0, 1.0]])
    before = {k: v.clone() for k, v in learner.online.state_dict().items()}
    conflict.measure(learner, batch, lookahead_lr=0.5)
    for k, v in learner.online.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in learner.online.parameters())


def test_csv_time_series_averages_truncates_and_writes_matrices(tmp_path):
    games = ["pong", "breakout"]
    path = tmp_path / "conflict.csv"
    for frames, update, c in ((1000, 10, -0.5), (2000, 20, 0.1), (3000, 30, 0.3)):
        t = conflict.Transfer(np.array([[1.0, c], [c, 1.0]]), np.array([[0.2, c / 10], [2 * c, 0.1]]))
        conflict.append_csv(path, t, games, frames, update)
    read_games, means, count = conflict.read_csv(path)
    assert read_games == games and count == 3
    assert means["cosine"][0, 1] == pytest.approx((-0.5 + 0.1 + 0.3) / 3)
    assert means["affinity"][1, 0] == pytest.approx(2 * (-0.5 + 0.1 + 0.3) / 3)
    assert conflict.read_csv(path, since_frames=2000)[1]["cosine"][0, 1] == pytest.approx(0.2)
    conflict.truncate_csv(path, 2000)
    assert conflict.read_csv(path)[2] == 2
    conflict.write_matrix(tmp_path / "m.csv", means["affinity"], games)
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "source\\target,pong,breakout"


def test_affinity_warns_when_the_lookahead_step_overshoots(tmp_path):
    """A negative self-affinity (a step on a game's own loss raised it) means --affinity-lr was too large."""
    from test_cli import mtdqn

    run = tmp_path / "run"
    run.mkdir()
    rows = ["frames_per_game,update,metric,source,target,value"]
    for metric, values in (("cosine", {"a": 1, "b": 1, "ab": 0.2}), ("affinity", {"a": -2.0, "b": 0.1, "ab": 0.05})):
        rows += [f"100,10,{metric},a,a,{values['a']}", f"100,10,{metric},b,b,{values['b']}",
                 f"100,10,{metric},a,b,{values['ab']}", f"100,10,{metric},b,a,{values['ab']}"]
    (run / "conflict.csv").write_text("\n".join(rows) + "\n")
    proc = mtdqn("affinity", run, cwd=tmp_path)
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "raised the loss of a (negative self-affinity)" in warning[0]
    (run / "conflict.csv").write_text("\n".join(rows).replace("affinity,a,a,-2.0", "affinity,a,a,0.3") + "\n")
    assert "warning" not in mtdqn("affinity", run, cwd=tmp_path).stderr


def test_adam_lookahead_is_the_learners_preconditioned_step_by_hand():
    """-lr g / (sqrt(v_hat) + eps), v_hat = (beta2 v + (1 - beta2) g^2) / (1 - beta2^(t + 1)), no momentum."""
    from types import SimpleNamespace

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-3)
    p.grad = torch.tensor([0.5, 1.0])
    optimizer.step()  # t = 1, v = 0.01 g0^2
    learner = SimpleNamespace(optimizer=optimizer)
    g = torch.tensor([2.0, -0.5])
    v = 0.99 * 0.01 * torch.tensor([0.25, 1.0]) + 0.01 * g ** 2
    expected = -0.1 * g / ((v / (1 - 0.99 ** 2)).sqrt() + 1e-3)
    torch.testing.assert_close(conflict.lookahead(learner, [p], g, 123.0, "adam")[0], expected)
    fresh = SimpleNamespace(optimizer=torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.1, eps=1e-3))
    q = fresh.optimizer.param_groups[0]["params"][0]  # no state yet: v_hat = g^2, a sign step of lr
    torch.testing.assert_close(conflict.lookahead(fresh, [q], g, 1.0, "adam")[0], -0.1 * g / (g.abs() + 1e-3))
    torch.testing.assert_close(conflict.lookahead(learner, [p], g, 0.5, "sgd")[0], -0.5 * g)


def test_adam_lookahead_lowers_each_games_own_loss_where_a_large_sgd_step_overshoots():
    """Why adam is the default: it needs no step size of its own, and on tasks that agree its step on a
    game's own loss lowers that loss, where SGD's affinities scale with --affinity-lr and at 1.0 overshoot."""
    learner, batch = two_task_learner([[1.0, -1.0], [1.0, -1.0]])
    for _ in range(5):
        learner.update(batch)
    adam = conflict.measure(learner, batch, lookahead_lr=1.0, step="adam")
    sgd = conflict.measure(learner, batch, lookahead_lr=1.0, step="sgd")
    assert (np.diag(adam.affinity) > 0).all() and (adam.affinity > 0).all()
    assert (np.diag(sgd.affinity) < 0).all()
