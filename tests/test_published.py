"""`mtdqn published`: evaluation reports against the published 100-run quartiles, checked by hand."""

import json
from dataclasses import replace

import numpy as np
import pytest

from mtdqn.agents.studies.compare import CompareError
from mtdqn.agents.core.evaluation import summarize, write_report
from mtdqn.agents.studies.reproduction import against, gather
from mtdqn.envs import PROTOCOLS, hns
from mtdqn.envs.published import iqm_over_games, published_scores
from test_cli import mtdqn


def run(tmp_path, name, scores: dict[str, list[float]], frames: int = 400_000, protocol: str = "atari100k",
        reset: bool = True):
    """A run folder with one periodic evaluation per entry of `frames` (a list: a learning curve); `reset`:
    the frame-stack restart at a lost life, as `--preset drq-eps` and the published runs have it."""
    for f in frames if isinstance(frames, list) else [frames]:
        proto = replace(PROTOCOLS[protocol], life_loss_reset=reset and PROTOCOLS[protocol].life_loss_terminal)
        write_report(summarize({g: np.array(s) for g, s in scores.items()}, protocol=proto,
                               epsilon=0.001, frames=dict.fromkeys(scores, f)), tmp_path / name / "evals" / f"frames_{f:09d}")
    return tmp_path / name


def test_the_shipped_table_is_the_reference_csv():
    drq, spr = published_scores("drq-eps"), published_scores("spr")
    assert len(drq) == len(spr) == 26
    f = drq["frostbite"]
    assert (f.runs, f.mean, f.p25, f.median, f.p75) == (100, 1014.2, 256.6, 528.8, 1761.7)
    assert spr["seaquest"].mean == 558.1 and drq["amidar"].p75 == 164.3
    with pytest.raises(ValueError, match="choose one of drq-eps, spr"):
        published_scores("rainbow")


def test_iqm_over_games_is_the_mean_of_the_middle_half():
    assert iqm_over_games([10.0, 1.0, 3.0, 2.0]) == 2.5  # of 4 games, the two middle ones
    assert iqm_over_games([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0]) == 4.5  # 8: drop 2 at each end


def test_inside_gaps_and_iqm_by_hand(tmp_path):
    a = run(tmp_path, "frostbite", {"frostbite": [200.0, 200.0]})
    b = run(tmp_path, "mt", {"seaquest": [340.0, 360.0], "gopher": [800.0, 800.0], "amidar": [120.0, 150.0]})
    result = against(gather([str(a), str(b)]))
    rows = {r["game"]: r for r in result["games"]}
    assert rows["frostbite"]["gap"] == pytest.approx(200.0 - 256.6)
    assert rows["frostbite"]["gap_of_median"] == pytest.approx((200.0 - 256.6) / 528.8)
    assert rows["gopher"]["gap"] == pytest.approx(800.0 - 755.4) and not rows["gopher"]["inside"]
    assert rows["seaquest"]["inside"] and rows["amidar"]["inside"] and rows["amidar"]["mean"] == 135.0
    assert result["inside"] == 2 and rows["seaquest"]["others"] == {"spr": 558.1}
    ours = sorted(float(hns(g, m)) for g, m in (("frostbite", 200.0), ("seaquest", 350.0), ("gopher", 800.0),
                                                 ("amidar", 135.0)))
    assert result["iqm_over_games"]["mtdqn"] == pytest.approx((ours[1] + ours[2]) / 2)
    drq = sorted(float(hns(g, m)) for g, m in (("frostbite", 1014.2), ("seaquest", 352.3), ("gopher", 621.6),
                                                ("amidar", 137.8)))
    assert result["iqm_over_games"]["drq-eps"] == pytest.approx((drq[1] + drq[2]) / 2)
    assert result["rliable_iqm"]["episodes_per_game"] == 2 and result["warnings"] == []


def test_off_protocol_or_budget_is_warned_and_unknown_or_repeated_games_refused(tmp_path):
    short = run(tmp_path, "short", {"frostbite": [300.0]}, frames=100_000, protocol="machado")
    notes = against(gather([str(short)]))["warnings"]
    assert notes[0] == "evaluated under protocol machado: the published runs used atari100k"
    assert "frostbite 100,000" in notes[1]
    # A multi-game run's games pass the budget by a few steps (it stops at its last game's): no warning.
    for frames, warned in ((400_124, False), (404_000, False), (404_004, True), (399_996, True)):
        notes = against(gather([str(run(tmp_path, f"f{frames}", {"frostbite": [300.0]}, frames=frames))]))["warnings"]
        budget = f"not every game was trained for 400,000 frames (100k agent steps), the published budget: frostbite {frames:,}"
        assert notes == ([budget] if warned else [])
    plain = run(tmp_path, "plain", {"gopher": [500.0], "amidar": [120.0]}, reset=False)
    assert against(gather([str(plain)]))["warnings"] == [
        "evaluated without the frame-stack restart at a lost life (--life-loss-reset), which the published runs "
        "had: amidar, gopher"]
    with pytest.raises(CompareError, match="'space_invaders' has no published DrQ"):
        against(gather([str(run(tmp_path, "si", {"space_invaders": [0.0]}))]))
    with pytest.raises(CompareError, match="'frostbite' is evaluated in both"):
        gather([str(short), str(short)])


def test_cli_writes_table_figure_and_curve_and_errors_in_one_line(tmp_path):
    a = run(tmp_path, "a", {"frostbite": [500.0], "seaquest": [100.0]}, frames=[200_000, 400_000])
    proc = mtdqn("published", a, "--agent", "spr", "--out", tmp_path / "pub", cwd=tmp_path)
    assert "1 of 2 games inside SPR's published [p25, p75]." in proc.stdout
    assert "| seaquest | 1 | 100.0 |" in proc.stdout
    saved = json.loads((tmp_path / "pub" / "published.json").read_text())
    assert saved["agent"] == "spr" and saved["inside"] == 1
    assert (tmp_path / "pub" / "published.png").stat().st_size > 10_000
    assert (tmp_path / "pub" / "published.csv").read_text().splitlines()[0].startswith("game,frames,episodes,mean")
    (tmp_path / "file").write_text("x")
    for args, message in (([a, "--out", tmp_path / "file"], "is a file"), ([tmp_path / "none"], "neither a run"),
                          ([a, "--agent", "rainbow"], "rainbow")):
        proc = mtdqn("published", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
