"""`mtdqn baseline`: SB3's DQN on one real game, its weights in our network exactly, scored by our evaluation."""

import numpy as np
import torch

from mtdqn.agents.bench import baseline
from mtdqn.envs import PROTOCOLS
from mtdqn.envs.sb3 import make_sb3_env
from test_cli import mtdqn


def test_sb3_weights_become_our_one_game_network_exactly():
    env = make_sb3_env("breakout", 4, PROTOCOLS["machado"], seed=0)
    model = baseline.sb3_dqn(env, baseline.BaselineSettings(buffer_size=1000), seed=0)
    network = baseline.to_network(model)
    obs = torch.from_numpy(env.reset())
    with torch.no_grad():
        ours = network(obs, torch.zeros(4, dtype=torch.long))
        theirs = model.policy.q_net(obs.float())  # SB3 scales uint8 frames by 1/255 inside, as we do
    env.close()
    assert ours.shape == (4, 4)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours.argmax(1).numpy(), model.predict(obs.numpy(), deterministic=True)[0])


def test_baseline_run_trains_saves_and_evaluates_like_ours(tmp_path):
    proc = mtdqn("baseline", "--game", "breakout", "--frames-per-game", "3000", "--learning-starts", "800",
                 "--buffer-size", "1000", "--eval-episodes", "2", "--max-episode-frames", "1000", "--log-interval",
                 "1000", "--out", tmp_path / "sb3", cwd=tmp_path)
    assert "| breakout | 3,008 | 2 |" in proc.stdout  # 750 agent steps rounded up to whole steps of 4 envs
    run = tmp_path / "sb3"
    assert (run / "sb3_model.zip").is_file() and (run / "evals" / "frames_000003008" / "eval.json").is_file()
    evaluated = mtdqn("evaluate", run, "--episodes", "2", cwd=tmp_path)
    assert "| breakout | 3,008 | 2 |" in evaluated.stdout
    again = mtdqn("baseline", "--game", "breakout", "--out", run, cwd=tmp_path, check=False)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    bad = mtdqn("baseline", "--game", "pongg", "--out", tmp_path / "x", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "pong" in bad.stderr and not (tmp_path / "x").exists()


def test_baseline_options_count_in_train_units():
    """--learning-starts in frames and --target-update-period in updates, as for `mtdqn train`; SB3 gets
    them in agent steps (4 frames each; an update every --train-frequency agent steps)."""
    env = make_sb3_env("pong", 2, PROTOCOLS["machado"], num_threads=1, seed=0)
    settings = baseline.BaselineSettings(learning_starts=8_000, target_update_period=250, train_frequency=4)
    model = baseline.sb3_dqn(env, settings, seed=0)
    assert model.learning_starts == 2_000 and model.target_update_interval == 1_000
    env.close()


def test_a_default_said_to_match_train_does_and_one_that_differs_says_trains():
    """A baseline option's help that names `mtdqn train --X` either has train's default or states train's default:
    --target-update-period's help once said "as train" beside 250 while train's default is 2,000."""
    import ast
    import dataclasses
    import inspect
    import re

    from mtdqn.agents.training.config import TrainConfig

    tree = ast.parse(inspect.getsource(baseline.BaselineSettings))
    body = tree.body[0].body
    docs = {a.target.id: b.value.value for a, b in zip(body, body[1:])
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)}
    train = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    ours = {f.name: f.default for f in dataclasses.fields(baseline.BaselineSettings)}
    named = {name for name, doc in docs.items() if re.search(r"`mtdqn train --", doc)}
    assert named == {"learning_starts", "target_update_period"}
    for name in named:
        doc = " ".join(docs[name].split())
        assert ours[name] == train[name] or f"`mtdqn train` defaults to {train[name]:,}" in doc, name
    assert ours["learning_starts"] == train["learning_starts"] == 20_000
    assert "250 (1,000 agent steps) is the RL Zoo's SB3 DQN on Atari" in " ".join(docs["target_update_period"].split())
    env = make_sb3_env("pong", 1, PROTOCOLS["machado"], num_threads=1, seed=0)
    model = baseline.sb3_dqn(env, baseline.BaselineSettings(buffer_size=1000), seed=0)
    assert model.target_update_interval == 1_000  # agent steps: the RL Zoo's target_update_interval
    env.close()
