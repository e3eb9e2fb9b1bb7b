"""Evaluation: one episode per env, deterministic per seed, HNS records, colour video in lockstep."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mtdqn.agents.core.evaluation import hns_figure, markdown_table, run_episodes, summarize, write_report
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.envs import PROTOCOLS, hns, make_env

SHORT = replace(PROTOCOLS["machado"], max_frames_per_episode=1200)


def test_runs_exactly_the_asked_episodes_and_is_deterministic_per_seed():
    net = MultiHeadQNetwork([9, 6])
    first = run_episodes(net, ["ms_pacman", "pong"], [0, 1], SHORT, episodes=3, epsilon=0.5, seed=4)
    again = run_episodes(net, ["ms_pacman", "pong"], [0, 1], SHORT, episodes=3, epsilon=0.5, seed=4)
    assert list(first) == ["ms_pacman", "pong"] and all(len(v) == 3 for v in first.values())
    for game in first:
        np.testing.assert_array_equal(first[game], again[game])
    assert first["ms_pacman"].min() >= 0 and first["pong"].max() <= 0  # pong at 300 steps: no point won


class AlwaysFire(torch.nn.Module):
    """Greedy FIRE on Breakout (the ball comes back after each lost life); keeps every input stack."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, obs, game_ids):
        self.seen.append(obs[0].clone())
        return torch.tensor([[0.0, 1.0, 0.0, 0.0]]).expand(len(obs), 4)


@pytest.mark.parametrize("reset", [False, True])
def test_evaluation_restarts_the_stack_at_a_lost_life_with_life_loss_reset(reset):
    """One Breakout game of 5 lives: the agent sees a fresh stack [0, 0, 0, f] at the start, and with
    life_loss_reset after each of the 4 lives lost before the last."""
    net = AlwaysFire()
    protocol = replace(PROTOCOLS["atari100k"], life_loss_reset=reset)
    run_episodes(net, ["breakout"], [0], protocol, episodes=1, epsilon=0.0, seed=0)
    seen = net.seen
    fresh = [i for i, s in enumerate(seen) if not s[:3].any() and s[3].any()]
    assert len(fresh) == (5 if reset else 1) and fresh[0] == 0
    for i in fresh:  # then the stack fills up again, one frame per step
        assert not seen[i + 1][:2].any() and torch.equal(seen[i + 1][2], seen[i][3])
        assert not seen[i + 2][0].any() and torch.equal(seen[i + 2][1:3], seen[i + 1][2:])


def test_summary_records_hns_only_for_games_with_a_reference(tmp_path):
    returns = {"pong": np.array([-21.0, -19.0]), "adventure": np.array([0.0, 1.0])}
    report = summarize(returns, protocol=SHORT, epsilon=0.001, frames={"pong": 400, "adventure": 400})
    pong, adventure = report["games"]
    assert pong["raw_mean"] == -20.0 and pong["raw_std"] == 1.0 and pong["frames"] == 400
    assert pong["hns"] == pytest.approx(float(hns("pong", -20.0)))
    assert "hns" not in adventure and adventure["raw_mean"] == 0.5
    assert report["aggregate"]["games_with_reference"] == 1
    assert report["aggregate"]["mean"]["value"] == pytest.approx(pong["hns"])
    paths = write_report(report, tmp_path)
    assert json.loads(paths["json"].read_text())["games"][1]["game"] == "adventure"
    assert paths["csv"].read_text().splitlines()[0] == "game,frames,episodes,raw_mean,raw_std,raw_min,raw_max,hns"
    assert "| adventure | 400 | 2 | 0.5 | 0.5 | n/a |" in paths["md"].read_text()


@pytest.mark.parametrize("protocol, cut", [(SHORT, True), (PROTOCOLS["classic"], False),
                                           (replace(PROTOCOLS["minatar"], max_frames_per_episode=500), True)])
def test_an_evaluation_capped_below_its_protocol_says_so(tmp_path, protocol, cut):
    """Pong's -21 of a whole game is about -2 at 400 frames: scores of cut-short episodes are recorded and
    printed as such (eval.json, the table, the chart's title), whole ones are not."""
    game = "minatar/breakout" if protocol.family == "minatar" else "pong"
    report = summarize({game: np.array([-2.0, 2.0])}, protocol=protocol, epsilon=0.001)
    cap = protocol.max_frames_per_episode
    assert report["episode_cap"] == {"frames": cap, "protocol_frames": 108_000, "below_protocol": cut}
    note = (f"Capped: episodes were cut at {cap:,} frames, below the {protocol.name} protocol's 108,000: raw scores "
            f"and {'DQN-normalized' if game != 'pong' else 'HNS'} are those of cut-short episodes, not comparable with "
            "whole-episode evaluations or published scores.")
    lines = write_report(report, tmp_path)["md"].read_text().splitlines()
    assert lines[3:5] == ["", note] if cut else lines[4].startswith("Aggregate ")  # under the table
    title = hns_figure(report).axes[0].get_title()
    assert title.endswith(f"({protocol.name} protocol, episodes cut at {cap:,} frames)" if cut
                          else f"({protocol.name} protocol)")
    del report["episode_cap"]  # a report from before the record: its protocol says the same
    assert (note in markdown_table(report)) == cut


def test_colour_env_replays_the_same_emulation_as_the_grayscale_one():
    gray, rgb = make_env("ms_pacman", 1, PROTOCOLS["machado"]), make_env("ms_pacman", 1, PROTOCOLS["machado"], rgb=True)
    gray_obs, gray_info = gray.reset(seed=11)
    rgb_obs, rgb_info = rgb.reset(seed=11)
    assert rgb_obs.shape == (1, 1, 210, 160, 3)
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(400):
        action = rng.integers(0, 9, size=1)
        g = gray.step(action)
        c = rgb.step(action)
        assert all(np.array_equal(x, y) for x, y in zip(g[1:4], c[1:4]))  # reward, terminated, truncated
        assert g[4]["lives"] == c[4]["lives"] and g[4]["frame_number"] == c[4]["frame_number"]
        total += float(g[1][0])
    assert total > 0  # rewards happened, so the comparison above meant something


def test_learning_curves_follow_the_periodic_evaluations(tmp_path):
    from mtdqn.agents.core.evaluation import learning_curves, plot_learning_curves
    from mtdqn.envs import reference_scores

    def at_hns(game, value):
        random, human = reference_scores()[game]
        return np.array([random + value * (human - random)] * 2)

    for frames, (pong, breakout) in ((100_000, (0.1, 0.3)), (200_000, (0.2, 0.1)), (300_000, (0.9, 0.9))):
        report = summarize({"pong": at_hns("pong", pong), "breakout": at_hns("breakout", breakout)},
                           protocol=PROTOCOLS["machado"], epsilon=0.001)
        write_report(report, tmp_path / "evals" / f"frames_{frames:09d}")
    write_report(report, tmp_path / "evals" / "frames_000300000-evaluate")  # `mtdqn evaluate`'s: not a point
    curves = learning_curves(tmp_path, up_to=200_000)  # 300,000: after the checkpoint a run resumed from
    assert list(curves) == ["pong", "breakout", "iqm"]
    assert [f for f, _ in curves["pong"]] == [100_000, 200_000]
    assert [h for _, h in curves["pong"]] == pytest.approx([0.1, 0.2])
    assert [h for _, h in curves["breakout"]] == pytest.approx([0.3, 0.1])
    assert [h for _, h in curves["iqm"]] == pytest.approx([0.2, 0.15])  # IQM of 2 games: their mean
    path = plot_learning_curves(curves, tmp_path / "learning_curves.png")
    assert path.stat().st_size > 5000
