"""Heatmaps are read at a glance: the cosine and affinity scales come from the pairs, not the diagonal (a game
with itself), are symmetric about 0, and every cell's text takes the colour its cell's luminance needs; the gate
overlap figure of `mtdqn sharing` follows the same text rule (it wrote white on yellow)."""

import matplotlib.figure
import numpy as np
import pytest

from mtdqn.agents.multitask.conflict import heatmap, off_diagonal_bound, relative_luminance, text_color
from mtdqn.scripts import sharing
from test_structure import learned_checkpoint  # noqa: F401  pong and breakout share half, qbert the other


def test_the_scale_is_the_largest_pair_not_the_diagonal():
    matrix = np.array([[1.0, -0.2, 0.05], [0.1, 1.0, np.nan], [0.3, -0.1, 0.9]])
    assert off_diagonal_bound(matrix) == 0.3
    assert off_diagonal_bound(np.array([[1.0, 0.0], [0.0, 1.0]])) == 1.0  # nothing off the diagonal to scale to
    assert off_diagonal_bound(np.array([[0.5, np.nan], [np.nan, 0.5]])) == 1.0


@pytest.mark.parametrize("rgb, luminance, colour", [
    ((1.0, 1.0, 1.0), 1.0, "black"),
    ((0.0, 0.0, 0.0), 0.0, "white"),
    ((1.0, 1.0, 0.0), 0.2126 + 0.7152, "black"),  # yellow (viridis's top): white text was unreadable on it
    ((0.5, 0.5, 0.5, 1.0), ((0.5 + 0.055) / 1.055) ** 2.4, "black"),  # alpha ignored
    ((1.0, 0.0, 0.0), 0.2126, "black"),  # just above 0.179: black contrasts more (5.25 against 4.00)
    ((0.0, 0.0, 1.0), 0.0722, "white"),
    ((0.03, 0.03, 0.03), 0.03 / 12.92, "white"),  # the linear part of sRGB
])
def test_text_colour_from_the_cells_luminance(rgb, luminance, colour):
    assert relative_luminance(rgb) == pytest.approx(luminance)
    assert text_color(rgb) == colour


def cells(ax) -> dict[tuple[int, int], tuple[str, str]]:
    """(row, column) -> (text, colour) of each cell's label."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): (t.get_text(), t.get_color()) for t in ax.texts}


def test_cosine_heatmap_masks_the_diagonal_and_scales_to_the_pairs():
    matrix = np.array([[1.0, 0.05, -0.1], [0.02, 1.0, 0.0], [-0.1, 0.08, 0.7]])
    fig = heatmap(matrix, ["a", "b", "c"], "cosine")
    ax = fig.axes[0]
    image = ax.images[0]
    assert image.get_clim() == (-0.1, 0.1)  # not (-1, 1): the diagonal's 1 would wash the pairs out
    assert list(np.ma.getmaskarray(image.get_array()).diagonal()) == [True, True, True]
    labels = cells(ax)
    assert labels[(0, 0)] == ("1\n(self)", "black") and labels[(2, 2)] == ("0.7\n(self)", "black")  # on grey
    assert labels[(0, 2)] == ("-0.1", "white")  # the scale's dark red end
    assert labels[(1, 2)] == ("0", "black")  # the scale's near-white middle
    assert len(labels) == 9


def test_sharing_overlap_figure_writes_black_on_yellow_and_white_on_purple(learned_checkpoint, tmp_path, monkeypatch,
                                                                           capsys):
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *args, **kwargs: saved.append(fig))
    sharing.main([str(learned_checkpoint), "--out", str(tmp_path / "out")])
    ax = saved[0].axes[0]
    assert ax.images[0].get_clim() == (0.0, 1.0)  # Jaccard keeps its fixed 0-to-1 scale
    labels = cells(ax)
    assert labels[(0, 0)] == ("1.00", "black") and labels[(0, 1)] == ("1.00", "black")  # viridis yellow
    assert labels[(0, 2)] == ("0.00", "white") and labels[(2, 1)] == ("0.00", "white")  # viridis dark purple


def test_affinity_command_scales_both_heatmaps_to_their_pairs(tmp_path, monkeypatch, capsys):
    from mtdqn.scripts import affinity

    rows = [("cosine", "a", "a", 1.0), ("cosine", "a", "b", 0.05), ("cosine", "b", "a", 0.05), ("cosine", "b", "b", 1.0),
            ("affinity", "a", "a", 0.5), ("affinity", "a", "b", -0.02), ("affinity", "b", "a", 0.01),
            ("affinity", "b", "b", 0.4)]
    (tmp_path / "conflict.csv").write_text("frames_per_game,update,metric,source,target,value\n"
                                           + "".join(f"1000,1,{m},{s},{t},{v}\n" for m, s, t, v in rows))
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *args, **kwargs: saved.append(fig))
    affinity.main([str(tmp_path)])
    cosine, tag = (fig.axes[0] for fig in saved)
    assert cosine.images[0].get_clim() == (-0.05, 0.05) and tag.images[0].get_clim() == (-0.02, 0.02)
    assert cells(tag)[(0, 0)] == ("0.5\n(self)", "black") and cells(tag)[(0, 1)] == ("-0.02", "white")
