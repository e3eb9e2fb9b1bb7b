"""published.png shares the x axis of every other figure: frames per game. The published runs' scores are at
their budget, 100k agent steps = 400k frames per game at frame skip 4 (the shipped reference says so), so their
band sits at 400k, and our evaluations at the frames their folders are named by."""

from importlib import resources

import pytest

from mtdqn.agents.studies.reproduction import against, curves, figure, gather, thousands
from mtdqn.envs import FRAMESKIP
from mtdqn.envs.published import BUDGET_FRAMES
from test_published import run


def test_the_published_budget_is_100k_agent_steps_that_is_400k_frames():
    header = resources.files("mtdqn.envs").joinpath("data/atari100k_published.csv").read_text().splitlines()[0]
    assert "(100k agent steps, 400k frames)" in header
    assert (BUDGET_FRAMES, FRAMESKIP) == (400_000, 4)


@pytest.mark.parametrize("frames, text", [(0, "0"), (25_000, "25k"), (12_500, "12.5k"), (400_000, "400k")])
def test_frames_ticks_in_thousands(frames, text):
    assert thousands(frames) == text


def test_curves_and_band_are_in_frames_per_game(tmp_path):
    a = run(tmp_path, "a", {"frostbite": [500.0], "seaquest": [100.0]}, frames=[200_000, 400_000])
    games = gather([str(a)])
    assert curves(games) == {"frostbite": [[(200_000, 500.0), (400_000, 500.0)]],
                             "seaquest": [[(200_000, 100.0), (400_000, 100.0)]]}
    fig = figure(against(games, draws=100), games)
    for ax in fig.axes:
        assert ax.get_xlim() == pytest.approx((0, 432_000))  # 1.08 x 400k
        assert list(ax.lines[0].get_xdata()) == [200_000, 400_000]
        band = ax.collections[0].get_paths()[0].vertices[:, 0]
        assert (band.min(), band.max()) == pytest.approx((384_000, 416_000))  # 400k +- 4%
        assert ax.get_xlabel() == "frames per game\n(400k = 100k agent steps)"
        assert ax.xaxis.get_major_formatter()(400_000, 0) == "400k"
