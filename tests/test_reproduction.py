"""Reproducing DrQ(eps): the atari100k protocol, the drq-eps preset, Dopamine's epsilon schedule, the
bootstrap with the target synced every update, fp32 heads under bf16, Dopamine's torso, and each game
getting a one-game agent's step in a multi-game update."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtdqn.agents.core.augment import intensity
from mtdqn.agents.training.config import TrainConfig, preset_options
from mtdqn.agents.core.learner import DQNLearner, autocast
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.torso import NatureTorso
from mtdqn.agents.core.replay import TaskBalancedReplay
from mtdqn.agents.training.runner import Trainer
from mtdqn.envs import PROTOCOLS, Lives
from mtdqn.scripts.cli import main as cli_main
from test_cli import mtdqn
from test_learner import ACTION_COUNTS, BEST, batch


def test_atari100k_protocol_values():
    p = PROTOCOLS["atari100k"]
    assert (p.repeat_action_probability, p.noop_max, p.max_frames_per_episode, p.full_action_space) == (
        0.0, 30, 108_000, False)
    assert p.life_loss_terminal and not p.episodic_life  # ale-py's episodic_life would restart the game
    assert not PROTOCOLS["machado"].life_loss_terminal and not PROTOCOLS["classic"].life_loss_terminal


def test_lives_zero_the_frames_from_before_a_lost_life():
    """Env 0 loses a life, wins a bonus life the next step (the restart goes on), keeps it, loses its
    last (game over) and starts a new game with 3 lives (zero-padded by ale-py already, so zeroing on
    changes nothing); env 1 never loses one. Each observation is all ones before `step` zeroes it."""
    lives = Lives(np.array([3, 3]))
    expected = [([0, 0, 0, 1], True), ([0, 0, 1, 1], False), ([0, 1, 1, 1], False), ([1, 1, 1, 1], False),
                ([0, 0, 0, 1], True), ([0, 0, 1, 1], False)]
    for env0, (frames, lost) in zip([2, 3, 3, 3, 0, 3], expected):
        obs = np.ones((2, 4, 2, 2), np.uint8)
        assert lives.step(np.array([env0, 3]), obs).tolist() == [lost, False]
        assert obs[0, :, 0, 0].tolist() == frames and obs[1].all()
    assert lives.step(np.array([2, 3])).tolist() == [True, False]  # without obs: only which envs lost one


@pytest.mark.parametrize("args, error", [
    (["--life-loss-reset"], "--life-loss-reset needs life-loss terminals, which --protocol machado has not: "
                            "use --protocol atari100k or add --life-loss-terminal"),
    (["--preset", "drq-eps", "--protocol", "machado"],
     "--life-loss-reset (on in --preset drq-eps) needs life-loss terminals, which --protocol machado has not: "
     "use --protocol atari100k or add --life-loss-terminal or --no-life-loss-reset")])
def test_life_loss_reset_needs_life_loss_terminals(tmp_path, capsys, args, error):
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--suite", "pong", *args, "--out", str(tmp_path / "run")])
    assert e.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [f"mtdqn: error: {error}"]
    assert not (tmp_path / "run").exists()


def test_drq_eps_preset_is_dopamines_gin_value_by_value():
    cfg = replace(TrainConfig(), **preset_options("drq-eps"))
    frames = 4  # per agent step
    assert cfg.protocol == "atari100k" and cfg.frames_per_game == 100_000 * frames
    assert cfg.train_frequency == 1 and cfg.batch_size == 32  # 32 samples per stored transition
    assert cfg.n_step == 10 and cfg.gamma == 0.99 and cfg.target_update_period == 1
    assert cfg.learning_starts == 1_600 * frames and cfg.epsilon_decay_frames == 5_000 * frames
    assert (cfg.epsilon_start, cfg.epsilon_end, cfg.eval_epsilon) == (1.0, 0.01, 0.001)
    assert (cfg.learning_rate, cfg.adam_eps, cfg.max_grad_norm) == (1e-4, 1.5e-4, 0.0)
    assert cfg.dueling and cfg.random_shift == 4 and cfg.intensity_noise == 0.05
    assert cfg.shift_per == "game"  # one crop offset per batch in the 2021 code of the published runs
    assert (cfg.padding, cfg.init, cfg.envs_per_game) == ("same", "xavier", 1)
    assert cfg.replay_size >= 100_000 + 1_000  # every step stays in replay, and an autoreset slot per episode
    assert cfg.life_loss_reset  # Dopamine begins a new agent episode (a zeroed stack) at a lost life


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    options = preset_options("drq-eps") | {"suite": "pong,breakout", "envs_per_game": 2, "batch_size": 8,
                                           "train_frequency": 2, "conflict_interval": 0}
    cfg = replace(TrainConfig(), **options)
    t = Trainer(cfg, tmp_path_factory.mktemp("trainer"))
    yield t
    t.actor.close()


@pytest.mark.parametrize("frames, expected", [
    (0, 1.0), (6_400, 1.0),  # epsilon_start through warm-up (Dopamine: 1.0 at steps 0 and 1,600)
    (6_400 + 10_000, 1.0 - 0.5 * 0.99),  # half way through the 20,000-frame decay
    (26_400, 0.01), (400_000, 0.01),  # Dopamine: 0.01 from step 6,600 on
])
def test_epsilon_decays_from_the_end_of_warm_up_by_hand(trainer, frames, expected):
    trainer.frames[:] = [frames, 0]
    assert trainer.epsilon()[0] == pytest.approx(expected, abs=1e-12)
    assert trainer.epsilon()[1] == 1.0  # per game


def test_train_frequency_and_batch_size_count_per_game(trainer):
    """2 games, train_frequency 2, batch_size 8: a vector step of 2 envs per game is 2 agent steps of
    each game, so it owes 1 update, and that update holds 8 transitions of each game."""
    trainer.update_credit = 0.0
    trainer.count(np.array([8, 8]), learning=True)  # 2 agent steps (8 frames) per game
    assert trainer.update_credit == 1.0
    for g in range(2):
        for i in range(20):
            trainer.replay.add(g, np.zeros((2, 84, 84), np.uint8), np.zeros(2, int), np.zeros(2), np.zeros(2, bool),
                               np.zeros(2, bool), np.full(2, i == 0))
    sampled = trainer.sample(trainer.replay.ready_games(trainer.cfg.batch_size))
    assert np.bincount(sampled.game).tolist() == [8, 8]


def test_train_frequency_below_1_owes_several_updates_per_agent_step(trainer):
    """0.5: two updates per agent step of each game (SPR's replay ratio 2)."""
    trainer.update_credit = 0.0
    trainer.cfg = replace(trainer.cfg, train_frequency=0.5)
    try:
        trainer.count(np.array([8, 8]), learning=True)  # 2 agent steps per game
        assert trainer.update_credit == 4.0
    finally:
        trainer.cfg = replace(trainer.cfg, train_frequency=2)


def test_with_target_period_1_the_bootstrap_is_the_online_max_in_one_forward():
    net = MultiHeadQNetwork([3])
    with torch.no_grad():
        net.heads.weight.zero_()
        net.heads.bias.copy_(torch.tensor([0.5, 2.0, 1.0]))
    learner = DQNLearner(net, gamma=0.9, target_update_period=1)
    assert learner.target is learner.online and learner.target_is_online
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    b = batch(rewards=[[1.0, 0.5, 0.0]], terminated=[False], steps=[2], game=[0])
    target = learner.td_targets(*learner._tensors(b)[2:])
    assert len(calls) == 1
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.9 * 0.5 + 0.81 * 2.0]))
    learner.update(b)  # the next target is the updated online network: nothing to copy
    assert learner.target is learner.online
    state = learner.state_dict()
    assert state["target"].keys() == state["online"].keys()  # checkpoints keep their layout


def test_heads_and_the_dueling_sum_run_in_fp32_under_bf16():
    """A dueling head with V large against small advantage gaps: bf16 would round V + A - mean(A) to
    steps of V/128 and flip greedy actions; run in fp32 the greedy actions are fp32's for every state."""
    torch.manual_seed(0)
    net = MultiHeadQNetwork([6], dueling=True)
    obs = torch.randint(0, 255, (256, 4, 84, 84), dtype=torch.uint8)
    games = torch.zeros(256, dtype=torch.long)
    with torch.no_grad():
        net.heads.weight.mul_(0.01)
        net.heads.bias.copy_(torch.linspace(0.0, 0.01, 6))  # advantage gaps of 0.002, the last action best ...
        net.values.bias.fill_(4.0)  # ... on a value shifted by 4 (bf16 resolution there: 0.03)
        with autocast("cpu", "bf16"):
            features = net.features(obs, games)
            q_bf16 = net(obs, games)
        assert features.dtype == torch.bfloat16 and q_bf16.dtype == torch.float32
        f = features.float()
        adv = net.heads(f)
        expected = net.values(f) + adv - adv.mean(1, keepdim=True)
        torch.testing.assert_close(q_bf16, expected, rtol=0, atol=1e-6)
        rounded = expected.bfloat16().float()  # what a bf16 dueling sum would give
    flipped = (rounded.argmax(1) != expected.argmax(1)).float().mean().item()
    assert flipped > 0.5  # the defect this guards against is real on this head
    assert torch.equal(q_bf16.argmax(1), expected.argmax(1))


def test_same_padding_and_xavier_init_are_dopamines_torso():
    torch.manual_seed(0)
    same = NatureTorso(padding="same", init="xavier")
    convs = [m for m in same.net if isinstance(m, torch.nn.Conv2d)]
    x = torch.rand(2, 4, 84, 84)
    sizes = []
    for m in same.net:
        x = m(x)
        if isinstance(m, torch.nn.Conv2d):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(32, 21, 21), (64, 11, 11), (64, 11, 11)] and x.shape == (2, 512)
    for m in convs + [same.net[-2]]:  # Xavier-uniform: |w| <= sqrt(6 / (fan_in + fan_out)), zero biases
        fan_in, fan_out = m.weight[0].numel(), m.weight.shape[0] * m.weight[0, 0].numel()
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.95 * bound
        assert torch.all(m.bias == 0)
    # the default torso keeps its layer names, so older checkpoints load
    assert list(NatureTorso().state_dict()) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias",
                                                "net.4.weight", "net.4.bias", "net.7.weight", "net.7.bias"]
    net = MultiHeadQNetwork([4, 18], dueling=True, padding="same", init="xavier")
    assert MultiHeadQNetwork(**net.spec()).spec() == net.spec()
    bounds = [(6 / (512 + 4)) ** 0.5, (6 / (512 + 18)) ** 0.5]  # each game's block is a layer of its own
    assert net.heads.weight[:4].abs().max() <= bounds[0] < net.heads.weight[4:].abs().max() * 1.2
    assert net.heads.weight[4:].abs().max() <= bounds[1] and torch.all(net.heads.bias == 0)


def test_intensity_noise_by_hand():
    frames = torch.full((3, 4, 2, 2), 0.5)
    noise = torch.randn(3, 1, 1, 1, generator=torch.Generator().manual_seed(7)).clamp(-2, 2)
    out = intensity(frames, 0.05, torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, 0.5 * (1 + 0.05 * noise).expand(3, 4, 2, 2))
    assert torch.equal(intensity(frames, 0.0), frames)
    assert (out[:, :1] == out[:, 1:2]).all()  # one factor per stack


def head_steps(num_games: int, updates: int, mean: bool) -> float:
    """Mean |change| per update of game 0's head weights on the synthetic learning problem (learning
    rate 1e-4, Adam eps 1.5e-4: young heads, where eps > sqrt(v)), in a run of `num_games` games with
    32 samples of each game per update; `mean` averages the games' losses as mtdqn did before."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    counts, best = (ACTION_COUNTS * 2)[:num_games], (BEST * 2)[:num_games]
    replay = TaskBalancedReplay(num_games, capacity_per_game=1000, lanes=1, n_step=3, seed=0)
    for g, n in enumerate(counts):
        pattern = np.full((1, 84, 84), 20 * (g + 1), np.uint8)
        pattern[0, 8 * g:8 * g + 16, :] = 255
        for _ in range(300):
            a = rng.integers(n)
            replay.add(g, pattern, np.array([a]), np.array([float(a == best[g])]), np.array([True]),
                       np.array([False]), np.array([True]))
            replay.add(g, pattern, np.array([0]), np.array([0.0]), np.array([False]), np.array([False]),
                       np.array([False]))
    learner = DQNLearner(MultiHeadQNetwork(counts), learning_rate=1e-4, adam_eps=1.5e-4, target_update_period=1,
                         balance="weighted" if mean else "equal",
                         task_weights=[1 / num_games] * num_games if mean else None)
    head = learner.online.heads.weight
    steps = []
    for _ in range(updates):
        before = head[:counts[0]].detach().clone()
        learner.update(replay.sample(32 * num_games, list(range(num_games))))
        steps.append((head[:counts[0]].detach() - before).abs().mean().item())
    return float(np.mean(steps))


def test_each_game_moves_as_far_per_update_with_4_games_as_alone():
    """Summed per-game losses give game 0's head the step a one-game agent takes (ratio ~1); the old
    mean of the losses gave it much less (measured here: 0.55 of it over the first 20 updates for G = 4,
    heading for 1/G where Adam's eps dominates sqrt(v))."""
    alone = head_steps(1, 20, mean=False)
    assert 0.8 < head_steps(4, 20, mean=False) / alone < 1.25  # 0.85 since the torso's step is one game's
    assert head_steps(4, 20, mean=True) / alone < 0.7


def test_a_drq_eps_run_records_its_protocol_everywhere(tmp_path):
    """A real run of the preset at a tiny budget: 1,600 agent steps of warm-up, then one update per step;
    its life_loss_reset goes into the protocol recorded in the checkpoint and the evaluations, also one
    under another protocol."""
    mtdqn("train", "--preset", "drq-eps", "--suite", "breakout", "--frames-per-game", 6_800, "--eval-episodes", 1,
          "--out", tmp_path / "run", cwd=tmp_path)
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["protocol"] == "atari100k" and config["preset"] == "drq-eps"
    state = torch.load(tmp_path / "run" / "checkpoints" / "frames_000006800.pt", weights_only=True)
    assert state["protocol"]["name"] == "atari100k" and state["protocol"]["life_loss_terminal"]
    assert state["protocol"]["life_loss_reset"] and config["life_loss_reset"]
    assert state["network"]["padding"] == "same" and state["network"]["init"] == "xavier"
    assert state["learner"]["updates"] == (6_800 - 6_400) // 4 - 1  # Dopamine: updates once add_count > 1,600
    report = json.loads(next(Path(tmp_path / "run" / "evals").glob("*/eval.json")).read_text())
    assert report["protocol"]["name"] == "atari100k" and report["protocol"]["noop_max"] == 30
    assert report["protocol"]["life_loss_reset"]
    mtdqn("evaluate", tmp_path / "run", "--protocol", "classic", "--episodes", 1, "--max-episode-frames", 400,
          "--out", tmp_path / "classic", cwd=tmp_path)
    report = json.loads((tmp_path / "classic" / "eval.json").read_text())  # the agent keeps its restarts
    assert report["protocol"]["name"] == "classic" and report["protocol"]["life_loss_reset"]
