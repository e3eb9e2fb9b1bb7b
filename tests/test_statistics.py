"""Statistics over runs (envs/statistics.py) against rliable's own functions and hand-computed values."""

import math
import warnings

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics
from scipy import stats

from mtdqn.envs.published import iqm_distribution, published_runs, published_scores
from mtdqn.envs.scores import hns
from mtdqn.envs.statistics import (aggregates, detectable_difference, difference_interval, difference_summary,
                                   format_estimate, percentile_of, performance_profiles, probability_of_improvement)

# 5 runs x 3 games, fixed
RUNS = np.array([[0.1, 0.9, 1.4], [0.3, 0.7, 2.0], [0.0, 1.1, 1.7], [0.2, 0.8, 0.9], [0.5, 1.0, 1.2]])


def rliable_intervals(scores, func, reps, seed):
    """rliable's get_interval_estimates called as its docs show, its global-generator draws seeded."""
    np.random.seed(seed)
    warnings.simplefilter("ignore", FutureWarning)  # arch deprecates the RandomState rliable passes it
    return rly.get_interval_estimates(scores, func, reps=reps, random_state=np.random.RandomState(seed))


def test_aggregates_and_intervals_equal_rliables_own_on_a_runs_by_games_matrix():
    ours = aggregates(RUNS, reps=400, seed=3)
    funcs = [metrics.aggregate_iqm, metrics.aggregate_median, metrics.aggregate_mean, metrics.aggregate_optimality_gap]
    point, interval = rliable_intervals({"x": RUNS}, lambda x: np.array([f(x) for f in funcs]), 400, 3)
    assert ours["runs"] == 5 and ours["interval"] == "95% stratified bootstrap over 5 runs"
    for i, name in enumerate(("iqm", "median", "mean", "optimality_gap")):
        assert ours[name]["value"] == pytest.approx(point["x"][i])
        assert [ours[name]["ci_low"], ours[name]["ci_high"]] == pytest.approx(interval["x"][:, i])
    # by hand: the IQM trims the 15 scores together (25% of 15 = 3 from each end: the middle 9)
    middle = np.sort(RUNS.ravel())[3:12]
    assert ours["iqm"]["value"] == pytest.approx(middle.mean())
    assert ours["optimality_gap"]["value"] == pytest.approx(np.mean(1 - np.minimum(RUNS, 1)))


def test_one_run_gets_point_estimates_and_no_interval():
    one = aggregates(RUNS[:1])
    assert one["runs"] == 1 and one["interval"] == "1 run: no interval over seeds"
    # 25% of 3 scores rounds down to none trimmed: the IQM of 3 games is their mean
    assert one["iqm"] == {"value": pytest.approx(0.8), "ci_low": None, "ci_high": None}
    assert format_estimate(one["iqm"]) == "0.800 (1 run: no interval over seeds)"
    assert format_estimate({"value": 0.5, "ci_low": 0.25, "ci_high": 0.75}) == "0.500 [0.250, 0.750]"
    p = probability_of_improvement(RUNS[:1], RUNS[1:])
    assert p["ci_low"] is None and p["runs"] == [1, 4] and p["interval"] == "1 run: no interval over seeds"
    assert difference_interval([0.1], [0.2, 0.3]) is None
    profile, interval = performance_profiles({"a": RUNS[:1]}, [0.5])["a"]
    assert interval is None and profile == pytest.approx([2 / 3])


def test_probability_of_improvement_is_rliables_with_different_run_counts():
    other = RUNS[:3] + 0.15
    ours = probability_of_improvement(other, RUNS, reps=300, seed=1)
    point, interval = rliable_intervals({"p": (other, RUNS)}, metrics.probability_of_improvement, 300, 1)
    assert ours["value"] == pytest.approx(float(point["p"])) and ours["runs"] == [3, 5]
    assert [ours["ci_low"], ours["ci_high"]] == pytest.approx(np.squeeze(interval["p"]))
    # by hand on one game: x = [1, 3], y = [2]: one of the two pairs is a win
    assert probability_of_improvement([[1.0], [3.0]], [[2.0]])["value"] == pytest.approx(0.5)


def test_difference_interval_is_welchs_by_hand():
    assert difference_interval([1.0, 1.0, 1.0], [0.5, 0.5, 0.5]) == pytest.approx((-0.5, -0.5, 0.0))
    # reference 1, 0, 1, 0 (variance 1/3), other constant 0.5: se = sqrt(1/3 / 4), df = 3, t(0.975, 3) = 3.182446
    low, high, p = difference_interval([1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5])
    assert (low, high, p) == pytest.approx((-3.182446 * math.sqrt(1 / 12), 3.182446 * math.sqrt(1 / 12), 1.0))
    # reference 0, 1, 2 (mean 1, variance 1), other 2, 4 (mean 3, variance 2): se^2 = 1/3 + 2/2 = 4/3,
    # Welch-Satterthwaite df = (4/3)^2 / ((1/3)^2 / 2 + 1^2 / 1) = 32/19
    low, high, p = difference_interval([0.0, 1.0, 2.0], [2.0, 4.0])
    half = stats.t.ppf(0.975, 32 / 19) * math.sqrt(4 / 3)
    assert (low, high) == pytest.approx((2 - half, 2 + half))
    assert p == pytest.approx(2 * stats.t.sf(2 / math.sqrt(4 / 3), 32 / 19))


def test_the_difference_interval_holds_its_level_with_few_runs():
    # no effect, normal scores, n runs a side, 4,000 seeded trials: the interval covers 0 about 95% of the time
    # (a percentile bootstrap of the same difference covers 81% at 3 runs a side and 87% at 5)
    rng = np.random.default_rng(0)
    for n in (3, 5):
        covered = [low <= 0 <= high for low, high, _ in (difference_interval(*rng.normal(size=(2, n)))
                                                         for _ in range(4000))]
        assert 0.94 <= np.mean(covered) <= 0.97, (n, np.mean(covered))  # Welch is a shade conservative at 3


def test_the_detectable_difference_is_found_four_times_in_five_by_welchs_test():
    # checked on fresh draws (another seed than the function's): shifted by the detectable difference, Welch's
    # test at 5% rejects in 80% of 4,000 trials, for equal and unequal runs a side
    rng = np.random.default_rng(1)
    for n_a, n_b in ((3, 3), (3, 5), (5, 5)):
        d = detectable_difference(n_a, n_b, 1.0)
        rejected = [stats.ttest_ind(rng.normal(size=n_a), rng.normal(size=n_b) + d, equal_var=False).pvalue < 0.05
                    for _ in range(4000)]
        assert 0.78 <= np.mean(rejected) <= 0.82, (n_a, n_b, np.mean(rejected))
    # the noncentral-t formula's 3.07 standard deviations at 3 runs a side would be found only ~69% of the time
    assert 3.4 <= detectable_difference(3, 3, 1.0) <= 3.6 and 2.0 <= detectable_difference(5, 5, 1.0) <= 2.15
    assert detectable_difference(5, 5, 0.2) == pytest.approx(0.2 * detectable_difference(5, 5, 1.0))  # in score units
    with pytest.raises(ValueError, match="2\\+ runs a side, got 1 and 5"):
        detectable_difference(1, 5, 1.0)
    # a report row: the pooled spread of the two sides (variance 0.01 and 0.04 over 3 runs each: pooled std 0.158)
    row = difference_summary([0.1, 0.2, 0.3], [0.4, 0.6, 0.8])
    assert row["value"] == pytest.approx(0.4)
    assert row["detectable"] == pytest.approx(math.sqrt(0.025) * detectable_difference(3, 3, 1.0))
    assert difference_summary([0.1], [0.4, 0.6])["detectable"] is None


def test_performance_profiles_are_rliables_score_distributions():
    taus = np.array([0.0, 0.5, 1.0, 1.5])
    profile, interval = performance_profiles({"a": RUNS}, taus, reps=200, seed=0)["a"]
    assert profile == pytest.approx([np.mean(RUNS > t) for t in taus])
    assert interval.shape == (2, 4) and np.all(interval[0] <= profile + 1e-12) and np.all(profile <= interval[1] + 1e-12)


def test_percentile_counts_below_plus_half_of_ties():
    assert percentile_of(3.0, [1, 2, 3, 4, 5]) == 50.0
    assert percentile_of(0.0, [1, 2]) == 0.0 and percentile_of(9.0, [1, 2]) == 100.0
    assert percentile_of(2.5, [1, 2, 3, 4]) == 50.0


def test_the_shipped_runs_are_the_quartiles_table_and_the_k_run_iqm_distribution_by_hand():
    for agent in ("drq-eps", "spr"):
        runs, table = published_runs(agent), published_scores(agent)
        assert set(runs) == set(table) and len(runs) == 26
        for game, scores in runs.items():
            assert len(scores) == table[game].runs == 100
            assert np.mean(scores) == pytest.approx(table[game].mean, abs=0.051)
            assert np.percentile(scores, [25, 50, 75]) == pytest.approx(
                [table[game].p25, table[game].median, table[game].p75], abs=0.051)
    # with all 100 runs per game drawn, every draw is the whole table: one value, rliable's IQM of it
    games = ["frostbite", "seaquest", "gopher", "amidar"]
    whole = np.stack([hns(g, published_runs("drq-eps")[g]) for g in games], axis=1)
    full = iqm_distribution("drq-eps", games, 100, draws=5)
    assert full == pytest.approx([metrics.aggregate_iqm(whole)] * 5)
    assert full[0] == pytest.approx(0.073, abs=0.0005)  # DrQ(eps)'s pooled IQM on these games (DESIGN.md)
    # one run per game: a draw is 4 scores, and its IQM the mean of the middle two
    one = iqm_distribution("drq-eps", games, 1, draws=10_000, seed=0)
    assert np.percentile(one, [25, 50, 75]) == pytest.approx([0.055, 0.073, 0.113], abs=0.003)
    assert np.array_equal(one, iqm_distribution("drq-eps", games, 1, draws=10_000, seed=0))
