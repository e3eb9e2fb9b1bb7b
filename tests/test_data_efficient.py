"""Data-efficient ingredients: DrQ random shift by hand, Q-head resets, normalization layers, the shipped
preset and its precedence."""

import numpy as np
import pytest
import torch
import yaml

from mtdqn.agents.core.augment import random_shift, shift
from mtdqn.agents.training.config import TrainConfig, preset_options, presets
from mtdqn.agents.core.learner import DQNLearner
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.replay import Batch
from mtdqn.scripts.train import parse
from test_cli import mtdqn, one_line_error


def test_shift_by_hand_repeats_the_edges():
    img = torch.arange(9, dtype=torch.uint8).view(1, 1, 3, 3)  # [[0,1,2],[3,4,5],[6,7,8]]
    stack = torch.cat([img, img + 10], dim=1)  # two channels
    frames = torch.cat([stack, stack + 100])  # two stacks
    out = shift(frames, 1, torch.tensor([0, 2]), torch.tensor([1, 0]))
    # stack 0 moved down one row (row 0 repeated); stack 1 moved up one row and right one column
    assert out[0, 0].tolist() == [[0, 1, 2], [0, 1, 2], [3, 4, 5]]
    assert out[1, 0].tolist() == [[103, 103, 104], [106, 106, 107], [106, 106, 107]]
    assert torch.equal(out[:, 1] - out[:, 0], torch.full((2, 3, 3), 10, dtype=torch.uint8))  # channels move together
    assert out.dtype == torch.uint8
    assert torch.equal(shift(frames, 1, torch.tensor([1, 1]), torch.tensor([1, 1])), frames)


def test_random_shift_draws_every_offset_independently_per_stack():
    frames = torch.zeros(2000, 1, 9, 9, dtype=torch.uint8)
    frames[:, 0, 4, 4] = 255  # one bright pixel: where it lands gives the offset
    out = random_shift(frames, 2, torch.Generator().manual_seed(0))
    where = out[:, 0].flatten(1).argmax(1)
    rows, cols = (where // 9 - 4).numpy(), (where % 9 - 4).numpy()
    assert set(rows) == set(cols) == {-2, -1, 0, 1, 2}
    counts = np.bincount((rows + 2) * 5 + cols + 2, minlength=25)
    assert counts.min() > 40 and counts.max() < 120  # uniform over 25 offsets: 80 each
    assert torch.equal(random_shift(frames, 0), frames)


def test_random_shift_per_game_moves_all_of_a_games_stacks_alike():
    """groups=game: one offset per game (Dopamine's DrQ(eps) drew one per batch of its one game)."""
    frames = torch.zeros(600, 1, 9, 9, dtype=torch.uint8)
    frames[:, 0, 4, 4] = 255
    game = torch.arange(600) % 3
    out = random_shift(frames, 2, torch.Generator().manual_seed(0), groups=game)
    where = out[:, 0].flatten(1).argmax(1)
    for g in range(3):
        assert len(set(where[game == g].tolist())) == 1  # every stack of game g moved by the same offset
    offsets = [(int(w) // 9 - 4, int(w) % 9 - 4) for w in where[:3]]
    drawn = 2 - torch.randint(0, 5, (2, 3), generator=torch.Generator().manual_seed(0))  # crop at d moves by 2-d
    assert offsets == list(zip(drawn[0].tolist(), drawn[1].tolist())) and len(set(offsets)) == 3
    draws = {tuple(random_shift(frames[:1], 2, torch.Generator().manual_seed(s), groups=game[:1])[0, 0].flatten()
                   .nonzero().tolist()[0]) for s in range(200)}
    assert len(draws) == 25  # a one-game batch still draws every offset


@pytest.mark.parametrize("shift_per", ["stack", "game"])
def test_the_learner_shifts_states_and_successors_independently(monkeypatch, shift_per):
    """With random_shift on, the online net sees shifted obs; the n-step successors are shifted by other
    offsets; with shift_per=game the draws are grouped by the stacks' games."""
    seen = []
    monkeypatch.setattr("mtdqn.agents.core.augment.random_shift",
                        lambda x, pad, generator=None, groups=None: seen.append((pad, x.clone(), groups)) or x.flip(-1))
    net = MultiHeadQNetwork([3, 2])
    learner = DQNLearner(net, random_shift=4, shift_per=shift_per)
    obs = np.random.default_rng(0).integers(0, 255, (4, 4, 84, 84), dtype=np.uint8)
    game = np.array([0, 1, 0, 1])
    learner.update(Batch(obs=obs, action=np.zeros(4, np.int64), rewards=np.zeros((4, 1), np.float32),
                         terminated=np.zeros(4, bool), steps=np.ones(4, np.int64), next_obs=obs[::-1].copy(),
                         game=game))
    assert [pad for pad, _, _ in seen] == [4, 4]
    assert torch.equal(seen[0][1], torch.from_numpy(obs)) and torch.equal(seen[1][1], torch.from_numpy(obs[::-1].copy()))
    for _, _, groups in seen:
        assert groups is None if shift_per == "stack" else groups.tolist() == game.tolist()


@pytest.mark.parametrize("dueling", [False, True])
def test_head_reset_renews_heads_and_their_adam_moments_only(dueling):
    torch.manual_seed(0)
    learner = DQNLearner(MultiHeadQNetwork([3, 2], dueling=dueling), reset_interval=3, learning_rate=1e-3)
    rng = np.random.default_rng(0)

    def update():
        obs = rng.integers(0, 255, (8, 4, 84, 84), dtype=np.uint8)
        learner.update(Batch(obs=obs, action=rng.integers(0, 2, 8), rewards=rng.random((8, 1), dtype=np.float32),
                             terminated=np.zeros(8, bool), steps=np.ones(8, np.int64), next_obs=obs,
                             game=np.array([0, 1] * 4)))

    update(), update()
    net, opt = learner.online, learner.optimizer
    heads = [net.heads] + ([net.values] if dueling else [])
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    target = {name: p.clone() for name, p in learner.target.state_dict().items()}
    update()  # update 3: step, then reset
    assert learner.updates == 3
    for layer in heads:
        for p in (layer.weight, layer.bias):
            assert p not in opt.state  # fresh moments: Adam starts this layer over
    head_params = {id(p) for layer in heads for p in layer.parameters()}
    for name, p in net.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed  # heads renewed; torso took its Adam step
        if id(p) in head_params:  # fresh init: default nn.Linear bound 1/sqrt(512)
            assert p.abs().max().item() <= 512 ** -0.5
    for name, t in learner.target.state_dict().items():
        assert torch.equal(t, target[name])  # the target keeps the learned values until its next sync
    torso_moments = [opt.state[p]["exp_avg"] for p in net.torsos.parameters()]
    assert all(m.abs().sum() > 0 for m in torso_moments)
    update()  # Adam restarts on the heads without complaint
    assert all(p in opt.state for layer in heads for p in layer.parameters())


def test_layer_norm_makes_q_blind_to_the_scale_of_each_layer():
    """GroupNorm/LayerNorm after every layer: scaling a layer's weights and bias by c > 0 scales its
    pre-activations by c, which the normalization divides out (up to its epsilon); without it, Q changes."""
    torch.manual_seed(0)
    obs = torch.randint(0, 255, (5, 4, 84, 84), dtype=torch.uint8)
    games = torch.tensor([0, 1, 0, 1, 1])
    for norm, blind in (("layer", True), ("none", False)):
        net = MultiHeadQNetwork([3, 2], dueling=True, norm=norm)
        with torch.no_grad():
            before = net(obs, games)
            dense = next(m for m in net.torsos[0].net if isinstance(m, torch.nn.Linear))
            for layer in (net.torsos[0].net[0], dense):  # first convolution, dense layer
                layer.weight.mul_(7.0), layer.bias.mul_(7.0)
            change = (net(obs, games) - before).nan_to_num().abs().max().item()  # -inf - -inf: nan
        assert change < 1e-3 if blind else change > 0.1
    dense = MultiHeadQNetwork([3], norm="layer").torsos[0].net[:-1]  # up to the dense layer's LayerNorm
    out = dense(obs.float() / 255.0)
    torch.testing.assert_close(out.mean(1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(1, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)


def test_without_norm_the_torso_keeps_its_checkpoint_keys():
    """Old checkpoints (before --norm existed) load: the plain torso's layers keep their indices."""
    keys = [k for k in MultiHeadQNetwork([3]).state_dict() if k.startswith("torsos.")]
    assert keys == [f"torsos.0.net.{i}.{w}" for i in (0, 2, 4, 7) for w in ("weight", "bias")]
    net = MultiHeadQNetwork([3, 2], norm="layer")
    assert net.spec()["norm"] == "layer"
    MultiHeadQNetwork(**net.spec()).load_state_dict(net.state_dict())


def test_the_shipped_preset_is_valid_and_sets_the_100k_regime():
    assert "data-efficient" in presets()
    options = preset_options("data-efficient")
    assert options["frames_per_game"] == 400_000  # 100k agent steps per game
    assert options["random_shift"] == 4 and options["dueling"] is True and options["n_step"] == 10
    TrainConfig(**options)  # every key is an option of the right type (from_yaml checked them)


def test_precedence_defaults_preset_config_flags(tmp_path):
    args = parse(["--preset", "data-efficient", "--suite", "pong"])
    assert (args.preset, args.n_step, args.random_shift, args.frames_per_game) == ("data-efficient", 10, 4, 400_000)
    assert args.gamma == TrainConfig.gamma == 0.99 and args.conflict_interval == TrainConfig.conflict_interval
    (tmp_path / "c.yaml").write_text("n_step: 5\nbatch_size: 64\n")
    args = parse(["--preset", "data-efficient", "--config", str(tmp_path / "c.yaml"), "--batch-size", "16"])
    assert (args.n_step, args.batch_size, args.random_shift) == (5, 16, 4)


def test_the_run_records_the_preset_and_its_values(tmp_path):
    mtdqn("train", "--preset", "data-efficient", "--suite", "freeway", "--frames-per-game", "1200",
          "--learning-starts", "400", "--eval-interval", "0", "--eval-episodes", "1", "--max-episode-frames", "400",
          "--norm", "layer", "--target-tau", "0.01", "--life-loss-terminal", "--out", "r", cwd=tmp_path)
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["preset"] == "data-efficient" and saved["random_shift"] == 4 and saved["n_step"] == 10
    assert (saved["norm"], saved["target_tau"], saved["life_loss_terminal"]) == ("layer", 0.01, True)
    state = torch.load(next((tmp_path / "r" / "checkpoints").glob("*.pt")), weights_only=True)
    assert state["network"]["norm"] == "layer"  # evaluate and resume rebuild the normalized torso
    assert saved["frames_per_game"] == 1200  # the flag beat the preset
    assert "--preset data-efficient" in (tmp_path / "r" / "command.txt").read_text()


@pytest.mark.parametrize("args, needles", [
    (["--preset", "fast"], ["'fast'", "data-efficient"]),
    (["--random-shift", "-1"], ["--random-shift", "-1"]),
    (["--reset-interval", "-5"], ["--reset-interval", "-5"]),
    (["--target-tau", "1.5"], ["--target-tau", "1.5", "[0, 1]"]),
    (["--norm", "batch"], ["'batch'", "layer"]),
])
def test_bad_preset_options_are_one_line_exit_2(tmp_path, args, needles):
    one_line_error(mtdqn("train", *args, "--out", "r", cwd=tmp_path, check=False), *needles)
    assert not (tmp_path / "r").exists()


def test_a_config_file_cannot_name_a_preset(tmp_path):
    (tmp_path / "c.yaml").write_text("preset: data-efficient\n")
    one_line_error(mtdqn("train", "--config", "c.yaml", "--out", "r", cwd=tmp_path, check=False), "'preset'")
