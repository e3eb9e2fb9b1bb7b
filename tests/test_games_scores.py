"""Games, suites and human-normalized scores."""

import numpy as np
import pytest

from mtdqn.envs import GameError, aggregate_hns, hns, reference_scores, resolve_games, suites
from mtdqn.envs.games import all_games


def test_suites_have_the_published_sizes_and_valid_ids():
    sizes = {name: len(games) for name, games in suites().items()}
    assert sizes == {"atari5": 5, "atari10": 10, "atari26": 26, "atari57": 57}
    for games in suites().values():
        assert set(games) <= set(all_games())
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


def test_aggregates_match_hand_computed_values():
    # 4 episodes x 4 games; per-game means 0, 1, 2, 10
    scores = np.array([[0.0, 1.0, 2.0, 10.0]] * 4)
    agg = aggregate_hns(scores, reps=200)
    assert agg["mean"]["value"] == pytest.approx(13 / 4)
    assert agg["median"]["value"] == pytest.approx(1.5)
    # IQM over all 16 entries: drop the lowest and highest 4 -> four 1s and four 2s
    assert agg["iqm"]["value"] == pytest.approx(1.5)
    # identical episodes: the bootstrap cannot move the estimate
    for a in agg.values():
        assert a["ci_low"] == pytest.approx(a["value"]) and a["ci_high"] == pytest.approx(a["value"])


def test_aggregate_intervals_cover_the_estimate_when_episodes_vary():
    rng = np.random.default_rng(0)
    scores = rng.normal(loc=[0.2, 0.5, 1.0], scale=0.3, size=(10, 3))
    agg = aggregate_hns(scores, reps=500)
    for a in agg.values():
        assert a["ci_low"] < a["value"] < a["ci_high"]


def test_aggregate_intervals_are_the_same_for_the_same_seed_and_leave_numpy_alone():
    """rliable 1.2 resamples with NumPy's global generator whatever random_state it is given; the
    interval must still depend on the seed alone, and the caller's global generator be left as it was."""
    scores = np.random.default_rng(0).random((30, 2))
    np.random.seed(7)
    expected_draw = np.random.random()
    np.random.seed(7)
    first, again = aggregate_hns(scores, reps=300), aggregate_hns(scores, reps=300)
    assert first == again and aggregate_hns(scores, reps=300, seed=1) != first
    assert np.random.random() == expected_draw
