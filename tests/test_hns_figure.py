"""hns.png is read at a glance: its axis fits the scores (and 0) instead of always running to the reference 1,
the reference line is drawn only when it is near, and each bar carries its value."""

import pytest

from mtdqn.agents.core.evaluation import hns_figure, hns_limits, plot_hns


@pytest.mark.parametrize("values, expected", [
    # span 0.16 from -0.06 to 0.1; 1 lies past 0.1 + 0.16: off the axis; 0.15 x 0.16 = 0.024 padding each side
    ([-0.06, 0.1], (-0.084, 0.124, False)),
    # 0 to 0.6 with 1 within 0.6 + 0.6: drawn, axis 0 to 1 (span 1); no bar left of 0: 0.02 edge there
    ([0.2, 0.6], (-0.02, 1.15, True)),
    # exactly at one span past the scores: drawn
    ([0.5], (-0.02, 1.15, True)),
    # -1 to 0.05, span 1.05: 1 <= 1.1 drawn; axis -1 to 1, span 2, padded 0.3 both sides
    ([-1.0, 0.05], (-1.3, 1.3, True)),
    # every score negative: 0 is the right end, the edge margin 0.02 x 0.5 past it
    ([-0.5, -0.25], (-0.575, 0.01, False)),
])
def test_axis_limits_fit_the_scores_and_take_the_reference_only_when_near(values, expected):
    left, right, show = hns_limits(values)
    assert (left, right) == pytest.approx(expected[:2]) and show is expected[2]


def report(values: dict[str, float | None]) -> dict:
    return {"games": [{"game": g, **({} if v is None else {"hns": v})} for g, v in values.items()],
            "aggregate": {}, "protocol": {"name": "machado"}}


def test_small_scores_fill_the_axis_with_their_values_written_and_the_far_human_line_named():
    fig = hns_figure(report({"pong": -0.06, "breakout": 0.1, "qbert": None}))  # qbert: no reference, no bar
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((-0.084, 0.124))
    assert [t.get_text() for t in ax.texts] == ["-0.060", "0.100"]
    assert [list(line.get_xdata()) for line in ax.lines] == [[0.0, 0.0]]  # the zero line only, no human line
    assert ax.get_legend() is None and ax.get_xlabel() == "HNS (human = 1 lies off this axis)"


def test_a_near_reference_is_drawn_and_minatar_names_dqn(tmp_path):
    fig = hns_figure(report({"minatar/breakout": 0.6, "minatar/asterix": 0.2}))
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((-0.02, 1.15))
    assert [list(line.get_xdata()) for line in ax.lines] == [[0.0, 0.0], [1.0, 1.0]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["DQN = 1"]
    assert [t.get_text() for t in ax.texts] == ["0.600", "0.200"] and ax.get_xlabel() == "DQN-normalized"
    plot_hns(report({"pong": 0.5}), tmp_path / "hns.png")
    assert (tmp_path / "hns.png").stat().st_size > 5000
