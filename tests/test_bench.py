"""`mtdqn bench` at a tiny size on real games, and the SB3 env adapter it compares through.

No timing thresholds: the numbers must be there, positive, and the ratios must be the ratios of
the measured rates.
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mtdqn.agents.bench import benchmark
from mtdqn.agents.bench.update_cost import HARD, LEARNED, PRUNED
from mtdqn.envs import PROTOCOLS, make_env
from mtdqn.envs.sb3 import AtariVecEnv, make_sb3_env
from mtdqn.scripts import bench
from mtdqn.scripts.cli import main as cli_main

TINY = benchmark.Sizes(acting_steps=200, fill_steps=80, learn_warmup_steps=16, train_steps=24, isolated_updates=2,
                       scale_steps=120, scale_games=(1, 2), cost_updates=1,
                       cost_variants=("Nature torso, target network", "Nature torso, target = online",
                                      "drq-eps (Dopamine torso, target = online)", "drq-eps, 4 games (4 x 32)",
                                      HARD, LEARNED, PRUNED),
                       minatar_fill_steps=100, minatar_steps=20, minatar_updates=2)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(benchmark, "QUICK", TINY)
        bench.main(["--quick", "--out", str(out), "--suite", "pong,breakout", "--game", "pong",
                    "--envs-per-game", "2", "--scale-envs", "2", "--seeds", "2"])
    return json.loads(out.read_text())


def test_json_has_settings_and_every_section(result):
    s = result["settings"]
    assert s["games"] == ["pong", "breakout"] and s["training_game"] == "pong" and s["envs_per_game"] == 2
    assert s["batch_size"] == 32 and s["train_frequency"] == 4 and s["torch_threads"] == 1 and s["quick"]
    assert s["precision"] == "fp32"
    for key in ("torch", "stable_baselines3", "ale_py", "cpu_count", "date"):
        assert s[key]
    assert {"acting", "training", "scale", "memory", "targets", "elapsed_s"} <= set(result)


def test_rates_are_positive_and_ratios_come_from_them(result):
    a, t = result["acting"], result["training"]
    for rate in (a["ours"], a["raw_env"], t["ours"], t["sb3"]):
        assert rate["steps"] > 0 and rate["seconds"] > 0
        assert math.isclose(rate["steps_per_s"], rate["steps"] / rate["seconds"])
    assert a["ours"]["envs"] == a["raw_env"]["envs"] == 4
    assert math.isclose(a["ratio"], a["ours"]["steps_per_s"] / a["raw_env"]["steps_per_s"])
    assert math.isclose(t["ratio_vs_sb3"], t["ours"]["steps_per_s"] / t["sb3"]["steps_per_s"])
    # learning was on while timed, for both, at one update per 4 agent steps
    assert t["ours"]["updates"] > 0 and t["sb3"]["updates"] > 0
    assert t["update_ms"] > 0 and t["sb3"]["update_ms"] > 0 and t["updates_per_step"] == 0.25
    ceiling = 1000 / ((t["sample_ms"] + t["update_ms"]) * t["updates_per_step"])
    assert math.isclose(t["ceiling_steps_per_s"], ceiling)
    assert math.isclose(t["fraction_of_ceiling"], t["ours"]["steps_per_s"] / ceiling)


def test_training_is_measured_at_both_precisions_against_the_same_sb3(result):
    t = result["training"]
    assert list(t["by_precision"]) == ["fp32", "bf16"] and t["precision"] == "fp32"
    assert t["by_precision"]["fp32"]["ours"] == t["ours"]  # the top level is the configured precision
    for x in t["by_precision"].values():
        assert x["ours"]["updates"] > 0 and x["update_ms"] > 0
        assert math.isclose(x["ratio_vs_sb3"], x["ours"]["steps_per_s"] / t["sb3"]["steps_per_s"])
        ceiling = 1000 / ((x["sample_ms"] + x["update_ms"]) * t["updates_per_step"])
        assert math.isclose(x["ceiling_steps_per_s"], ceiling)
        assert math.isclose(x["fraction_of_ceiling"], x["ours"]["steps_per_s"] / ceiling)


def test_scale_rows_and_memory(result):
    rows = result["scale"]["rows"]
    assert [r["games"] for r in rows] == [1, 2] and [r["envs"] for r in rows] == [2, 2]
    for r in rows:
        assert r["steps_per_s"] > 0 and r["raw_env_steps_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert math.isclose(r["vs_1_game"], r["steps_per_s"] / rows[0]["steps_per_s"])
        assert math.isclose(r["vs_raw_env"], r["steps_per_s"] / r["raw_env_steps_per_s"])
    m = result["memory"]
    assert m["replay_bytes_per_transition"] == 84 * 84 + 8  # one frame, action, reward and 3 flags
    assert math.isclose(m["projected_1m_transitions_gb"], m["replay_bytes_per_transition"] * 1e6 / 1e9)
    assert m["sb3_replay_bytes_per_transition"] > 2 * 4 * 84 * 84  # stacked obs and next_obs
    assert m["peak_rss_mb"] >= max(r["peak_rss_mb"] for r in rows)


def test_table_has_every_row(result):
    table = bench.markdown_table(result)
    for text in ("acting", "pong (2 envs), fp32", "pong (2 envs), bf16", "SB3 DQN (fp32)",
                 "training bf16 vs learner-bound", "scale, 2 games", "replay bytes per transition", "peak RSS"):
        assert text in table


@pytest.mark.parametrize("args", [["--game", "pong,breakout"], ["--game", "pongg"], ["--envs-per-game", "3"],
                                  ["--threads", "0"], ["--suite", "atari6"], ["--precision", "fp16"], ["--seeds", "1"],
                                  ["--minatar-game", "breakout"]])
def test_bad_input_is_one_line_and_exit_2(args, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtdqn: error:") and "\n" not in err


def test_sb3_train_freq_gives_one_update_per_4_agent_steps():
    assert benchmark.sb3_train_freq(4, 1) == (4, 1)
    assert benchmark.sb3_train_freq(4, 4) == (1, 1)
    assert benchmark.sb3_train_freq(4, 8) == (1, 2)
    with pytest.raises(ValueError):
        benchmark.sb3_train_freq(4, 3)


def test_sb3_adapter_matches_our_env_and_follows_sb3_conventions():
    """Same seeds and actions: the adapter's terminal_observation is the final obs our env shows."""
    protocol = replace(PROTOCOLS["machado"], max_frames_per_episode=200)  # truncated after 50 steps
    ours = make_env("pong", 2, protocol)
    theirs = AtariVecEnv("pong", 2, protocol)
    theirs.seed(7)
    obs_ours, _ = ours.reset(seed=7)
    obs_theirs = theirs.reset()
    np.testing.assert_array_equal(obs_ours, obs_theirs)
    rng = np.random.default_rng(0)
    for _ in range(60):
        actions = rng.integers(0, 6, 2)
        obs_ours, _, terminated, truncated, _ = ours.step(actions)
        obs_theirs, _, dones, infos = theirs.step(actions)
        np.testing.assert_array_equal(dones, terminated | truncated)
        if dones.any():
            break
    assert dones.all() and truncated.all()
    for i in range(2):
        np.testing.assert_array_equal(infos[i]["terminal_observation"], obs_ours[i])
        assert infos[i]["TimeLimit.truncated"]
    assert not obs_theirs[:, :3].any()  # already the next episode's first observation
    ours.close()
    theirs.close()


def test_sb3_env_clips_rewards_for_learning_but_reports_raw_returns():
    protocol = replace(PROTOCOLS["machado"], max_frames_per_episode=400)  # truncated after 100 steps
    raw = make_sb3_env("ms_pacman", 2, protocol, seed=1, clip_rewards=False)
    clipped = make_sb3_env("ms_pacman", 2, protocol, seed=1)
    raw.reset(), clipped.reset()
    rng = np.random.default_rng(0)
    raw_rewards = []
    for _ in range(100):
        actions = rng.integers(0, 9, 2)
        _, r_raw, _, _ = raw.step(actions)
        _, r_clipped, dones, infos = clipped.step(actions)
        np.testing.assert_array_equal(r_clipped, np.clip(r_raw, -1, 1))
        raw_rewards.append(r_raw)
    raw.close(), clipped.close()
    raw_rewards = np.stack(raw_rewards)
    assert raw_rewards.max() > 1  # pellets are worth 10: clipping did something
    assert dones.all() and infos[0]["TimeLimit.truncated"]
    assert infos[0]["episode"]["r"] == raw_rewards[:, 0].sum() and infos[0]["episode"]["l"] == 100


def test_update_cost_rows_count_what_each_variant_computes(result):
    """With the target synced every update the target's forward pass is gone: exactly one forward of
    the 32 successor stacks fewer FLOPs. Four games cost about 4 one-game updates."""
    from torch.utils.flop_counter import FlopCounterMode

    from mtdqn.agents.core.network import MultiHeadQNetwork

    rows = {r["variant"]: r for r in result["update_cost"]}
    assert list(rows) == list(TINY.cost_variants)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        MultiHeadQNetwork([18], dueling=True)(torch.zeros(32, 4, 84, 84), torch.zeros(32, dtype=torch.long))
    forward = counter.get_total_flops() / 1e9
    saved = rows["Nature torso, target network"]["gflops"] - rows["Nature torso, target = online"]["gflops"]
    assert saved == pytest.approx(forward, rel=1e-9)
    one, four = rows["drq-eps (Dopamine torso, target = online)"], rows["drq-eps, 4 games (4 x 32)"]
    assert 3.9 < four["gflops"] / one["gflops"] < 4.1 and four["games"] == 4
    for r in rows.values():
        assert r["ms_per_update"] > 0 and math.isclose(r["ms_per_game_update"], r["ms_per_update"] / r["games"])
    assert "| drq-eps, 4 games (4 x 32) | 4 |" in bench.markdown_table(result)


def test_learned_sharing_is_timed_against_hard_sharing_at_the_same_width(result):
    """The gates are elementwise masks, so before the freeze a learned update does the convolutions and
    matmuls of a hard-sharing one exactly; after it, with half of each layer's channels pruned, every
    layer computes at most half its outputs."""
    rows = {r["variant"]: r for r in result["update_cost"]}
    learned = result["learned_sharing"]
    for key, name in (("training", LEARNED), ("pruned", PRUNED)):
        assert learned[key]["ms_ratio"] == rows[name]["ms_per_update"] / rows[HARD]["ms_per_update"]
        assert learned[key]["gflops_ratio"] == rows[name]["gflops"] / rows[HARD]["gflops"]
    assert learned["training"]["gflops_ratio"] == pytest.approx(1.0, rel=1e-9)
    assert 0.2 < learned["pruned"]["gflops_ratio"] < 0.5
    assert result["targets"]["learned_vs_hard_sharing"] == 1.25
    table = bench.markdown_table(result)
    assert "learned sharing before the freeze / hard sharing: " in table and "target <= 1.25" in table
    assert "learned sharing frozen, half of each layer pruned / hard sharing: " in table


def test_minatar_seed_rows_set_a_batch_of_seeds_against_one_seed(result):
    pytest.importorskip("minatar")
    x = result["minatar_seeds"]
    assert x["game"] == "minatar/breakout" and x["seeds"] == 2 and x["steps_per_seed"] == 20
    assert x["one_seed_steps_per_s"] > 0 and x["batch_seed_steps_per_s"] > 0
    assert x["cost_per_seed_vs_separate"] == pytest.approx(x["one_seed_steps_per_s"] / x["batch_seed_steps_per_s"])
    assert x["batch_update_ms_per_seed"] == pytest.approx(x["batch_update_ms"] / 2)
    assert "CPU time per seed, 2 seeds batched / separate processes" in bench.markdown_table(result)
