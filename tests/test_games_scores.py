"""Games, suites and human-normalized scores."""

import numpy as np
import pytest

from mtdqn.envs import GameError, aggregate_hns, hns, reference_scores, resolve_games, suites
from mtdqn.envs.games import all_games


def test_suites_have_the_published_sizes_and_valid_ids():
    sizes = {name: len(games) for name, games in suites().items()}
    assert sizes == {"atari5": 5, "atari10": 10, "atari26": 26, "atari57": 57, "minatar": 5}
    for name, games in suites().items():
        assert set(games) <= set(all_games()) or name == "minatar"
    assert resolve_games("atari5") == ["battle_zone", "double_dunk", "name_this_game", "phoenix", "qbert"]


def test_comma_list_keeps_order():
    assert resolve_games("pong,breakout, ms_pacman") == ["pong", "breakout", "ms_pacman"]


@pytest.mark.parametrize("spec, expected", [
    ("brekout", "unknown game 'brekout': did you mean breakout?"),
    ("pong,mspacman", "unknown game 'mspacman': did you mean ms_pacman"),
    ("atari6", "unknown suite or game 'atari6': did you mean atari26 or atari5"),
    ("pong,,breakout", "empty game"),
    ("", "empty game"),
    ("pong,breakout,pong", "game listed twice in 'pong,breakout,pong': pong"),
])
def test_bad_game_specs_name_the_value_and_a_fix(spec, expected):
    with pytest.raises(GameError) as info:
        resolve_games(spec)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("game, score, expected", [
    # (score - random) / (human - random), by hand from the reference table
    ("alien", 3677.75, (3677.75 - 227.8) / (7127.7 - 227.8)),  # = 0.5
    ("pong", 14.6, 1.0),  # human score
    ("pong", -20.7, 0.0),  # random score
    ("breakout", 30.5 + 28.8, 2.0),  # human 30.5, random 1.7: one more human gap
    ("ms_pacman", 0.0, -307.3 / (6951.6 - 307.3)),
])
def test_hns_by_hand(game, score, expected):
    assert hns(game, score) == pytest.approx(expected, abs=1e-12)


def test_hns_of_alien_midpoint_is_exactly_one_half():
    assert hns("alien", 3677.75) == pytest.approx(0.5)


def test_game_without_reference_has_no_hns():
    assert "adventure" in all_games() and "adventure" not in reference_scores()
    assert hns("adventure", 100.0) is None


def test_reference_table_is_the_57_games():
    refs = reference_scores()
    assert len(refs) == 57 and set(refs) == set(suites()["atari57"])
    assert refs["montezuma_revenge"] == (0.0, 4753.3)


def test_one_runs_aggregates_are_over_its_games_means_with_an_episode_interval_only():
    # one run, 4 games with per-game mean HNS 0, 1, 2, 10 (4 identical episodes each)
    episodes = [np.full(4, v) for v in (0.0, 1.0, 2.0, 10.0)]
    agg = aggregate_hns(episodes, reps=200)
    assert agg["runs"] == 1 and agg["interval"] == "1 run: no interval over seeds"
    assert agg["mean"]["value"] == pytest.approx(13 / 4) and agg["median"]["value"] == pytest.approx(1.5)
    assert agg["iqm"]["value"] == pytest.approx(1.5)  # of 4 game means, the middle two
    assert agg["optimality_gap"]["value"] == pytest.approx((1 + 0 + 0 + 0) / 4)  # only the 0 is below 1
    for name in ("iqm", "median", "mean", "optimality_gap"):
        assert agg[name]["ci_low"] is None and agg[name]["ci_high"] is None
        # identical episodes: resampling them cannot move the estimate
        assert agg[name]["episode_interval"] == pytest.approx([agg[name]["value"]] * 2)


def test_the_episode_interval_covers_the_estimate_when_episodes_vary_and_games_may_differ_in_episodes():
    rng = np.random.default_rng(0)
    episodes = [rng.normal(m, 0.3, n) for m, n in ((0.2, 10), (0.5, 7), (1.0, 12))]
    agg = aggregate_hns(episodes, reps=500)
    assert agg["mean"]["value"] == pytest.approx(np.mean([e.mean() for e in episodes]))
    for name in ("iqm", "median", "mean"):
        low, high = agg[name]["episode_interval"]
        assert low < agg[name]["value"] < high


def test_the_episode_interval_is_the_same_for_the_same_seed_and_leaves_numpy_alone():
    episodes = list(np.random.default_rng(0).random((2, 30)))
    np.random.seed(7)
    expected_draw = np.random.random()
    np.random.seed(7)
    first, again = aggregate_hns(episodes, reps=300), aggregate_hns(episodes, reps=300)
    assert first == again and aggregate_hns(episodes, reps=300, seed=1) != first
    assert np.random.random() == expected_draw
