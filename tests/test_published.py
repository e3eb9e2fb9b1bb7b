"""`mtdqn published`: our runs against the published agents' 100 runs per game, checked by hand."""

import json
from dataclasses import replace

import numpy as np
import pytest

from mtdqn.agents.studies.compare import CompareError
from mtdqn.agents.core.evaluation import summarize, write_report
from mtdqn.agents.studies.reproduction import against, gather
from mtdqn.envs import PROTOCOLS, hns
from mtdqn.envs.published import iqm_distribution, published_runs, published_scores
from mtdqn.envs.statistics import percentile_of
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


def test_percentiles_inside_and_the_k_run_iqm_by_hand(tmp_path):
    a = run(tmp_path, "frostbite", {"frostbite": [200.0, 200.0]})
    b = run(tmp_path, "mt", {"seaquest": [340.0, 360.0], "gopher": [800.0, 800.0], "amidar": [120.0, 150.0]})
    result = against(gather([str(a), str(b)]), draws=2000)
    rows = {r["game"]: r for r in result["games"]}
    assert rows["amidar"]["means"] == [135.0] and rows["amidar"]["inside"] == [True]
    assert rows["frostbite"]["inside"] == [False] and rows["gopher"]["inside"] == [False]  # 800 > p75 755.4
    frostbite = published_runs("drq-eps")["frostbite"]
    assert rows["frostbite"]["percentiles"] == [pytest.approx(100 * np.mean(frostbite < 200.0))]
    assert result["inside"] == 2 and result["run_games"] == 4 and rows["seaquest"]["others"] == {"spr": 558.1}
    # our IQM: one run per game, 4 games -> the mean of the middle two HNS; no interval over seeds
    ours = sorted(float(hns(g, m)) for g, m in (("frostbite", 200.0), ("seaquest", 350.0), ("gopher", 800.0),
                                                 ("amidar", 135.0)))
    assert result["iqm"]["value"] == pytest.approx((ours[1] + ours[2]) / 2) and result["iqm"]["ci_low"] is None
    dist = iqm_distribution("drq-eps", list(rows), 1, 2000)
    assert result["published_iqm"]["drq-eps"] == {"median": pytest.approx(np.median(dist)),
                                                  "p25": pytest.approx(np.percentile(dist, 25)),
                                                  "p75": pytest.approx(np.percentile(dist, 75)),
                                                  "ours_percentile": pytest.approx(percentile_of(result["iqm"]["value"], dist))}
    assert result["runs_per_game"] == 1 and result["warnings"] == []


def test_seeds_of_a_game_are_its_runs_and_every_game_needs_as_many(tmp_path):
    """Two seeds per game: each gets its percentile and verdict; the IQM pools 2 runs x 2 games (of the 4 values,
    25% = 1 trimmed from each end: the mean of the middle two) and has an interval over runs."""
    s0 = run(tmp_path / "s0", "mt", {"frostbite": [100.0], "amidar": [100.0]})
    s1 = run(tmp_path / "s1", "mt", {"frostbite": [2000.0], "amidar": [150.0]})
    result = against(gather([str(s0), str(s1)]), draws=500)
    rows = {r["game"]: r for r in result["games"]}
    assert rows["frostbite"]["means"] == [100.0, 2000.0] and rows["frostbite"]["inside"] == [False, False]
    assert rows["amidar"]["inside"] == [False, True] and result["runs_per_game"] == 2
    values = sorted(float(hns(g, m)) for g, m in (("frostbite", 100.0), ("frostbite", 2000.0), ("amidar", 100.0),
                                                   ("amidar", 150.0)))
    assert result["iqm"]["value"] == pytest.approx((values[1] + values[2]) / 2) and result["iqm"]["ci_low"] is not None
    lone = run(tmp_path / "s2", "mt", {"frostbite": [100.0]})
    with pytest.raises(CompareError, match="same number of runs.*frostbite 3, amidar 2"):
        gather([str(s0), str(s1), str(lone)])
    with pytest.raises(CompareError, match="is given twice"):
        gather([str(s0), str(s0)])
    with pytest.raises(CompareError, match="is given twice"):  # a run folder and its own eval.json: one run
        gather([str(s0), str(next(s0.glob("evals/*/eval.json")))])


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
    with pytest.raises(CompareError, match="is given twice"):
        gather([str(short), str(short)])


def test_cli_writes_table_figure_and_curve_and_errors_in_one_line(tmp_path):
    a = run(tmp_path, "a", {"frostbite": [500.0], "seaquest": [100.0]}, frames=[200_000, 400_000])
    proc = mtdqn("published", a, "--agent", "spr", "--out", tmp_path / "pub", cwd=tmp_path)
    assert "1 of 2 run-games inside SPR's published [p25, p75]" in proc.stdout
    assert "| seaquest | 1 | 100.0 |" in proc.stdout and "(1 run: no interval over seeds)" in proc.stdout
    assert "| SPR | " in proc.stdout and "| DrQ(ε) | " in proc.stdout
    saved = json.loads((tmp_path / "pub" / "published.json").read_text())
    assert saved["agent"] == "spr" and saved["inside"] == 1
    assert (tmp_path / "pub" / "published.png").stat().st_size > 10_000
    assert (tmp_path / "pub" / "published.csv").read_text().splitlines()[0].startswith("game,source,frames,episodes")
    (tmp_path / "file").write_text("x")
    for args, message in (([a, "--out", tmp_path / "file"], "is a file"), ([tmp_path / "none"], "neither a run"),
                          ([a, "--agent", "rainbow"], "rainbow")):
        proc = mtdqn("published", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_runs_position_is_in_score_points_with_the_right_sign_when_the_median_is_negative():
    """Pong's published DrQ(eps) quartiles are all negative: -20.5 is 4.9 points below p25, (-15.6 - -20.5) / (-6.6
    - -15.6) = 4.9 / 9.0 = 0.54 of the IQR; a ratio to the median would have called it "+86%" (-20.5 / -11.0)."""
    from mtdqn.envs.published import Published, position

    pong = published_scores("drq-eps")["pong"]
    assert pong == Published(runs=100, mean=-9.1, p25=-15.6, median=-11.0, p75=-6.6)
    assert position(-20.5, pong) == "4.9 below p25 (0.54 IQR)"
    assert position(-12.0, pong) == "inside, 1.0 below the median"
    assert position(-9.0, pong) == "inside, 2.0 above the median"
    assert position(0.0, pong) == "6.6 above p75 (0.73 IQR)"
    assert position(1.0, Published(100, 0.0, 0.0, 0.0, 0.0)) == "1.0 above p75"  # no spread: no IQR units


def evaluation(tmp_path, name, scores, protocol="atari100k", cap=108_000):
    proto = replace(PROTOCOLS[protocol], life_loss_reset=PROTOCOLS[protocol].life_loss_terminal,
                    max_frames_per_episode=cap)
    write_report(summarize({g: np.array(s) for g, s in scores.items()}, protocol=proto, epsilon=0.001,
                           frames=dict.fromkeys(scores, 400_000)), tmp_path / name / "evals" / "frames_000400000")
    return tmp_path / name


def test_cli_prints_and_saves_each_runs_position_and_its_warnings(tmp_path):
    # boxing: 11.0 - p75 10.6 = 0.4 points, / (10.6 - 7.0) = 0.11 IQR
    pong = evaluation(tmp_path, "pong", {"pong": [-20.0, -21.0], "boxing": [10.0, 12.0]}, protocol="machado")
    proc = mtdqn("published", pong, "--out", tmp_path / "pub", cwd=tmp_path)
    table = ["| game | run | score | position |", "|---|---:|---:|---|",
             "| pong | 1 | -20.5 | 4.9 below p25 (0.54 IQR) |", "| boxing | 1 | 11.0 | 0.4 above p75 (0.11 IQR) |"]
    warning = "Warning: evaluated under protocol machado: the published runs used atari100k."
    assert proc.stdout.splitlines()[-len(table) - 2:] == [*table, "", warning]
    assert (tmp_path / "pub" / "published.md").read_text() == proc.stdout
    rows = json.loads((tmp_path / "pub" / "published.json").read_text())["games"]
    assert [r["positions"] for r in rows] == [["4.9 below p25 (0.54 IQR)"], ["0.4 above p75 (0.11 IQR)"]]


def test_an_evaluation_with_another_episode_cap_is_refused(tmp_path):
    capped = evaluation(tmp_path, "capped", {"pong": [-5.0]}, cap=40_000)
    proc = mtdqn("published", capped, "--out", tmp_path / "pub", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stdout == "" and not (tmp_path / "pub").exists()
    assert proc.stderr == (f"mtdqn: error: {capped}/evals/frames_000400000/eval.json evaluated pong with episodes capped "
                           f"at 40,000 frames; the published runs' protocol (atari100k) plays them up to 108,000 frames "
                           f"(27,000 agent steps): evaluate the checkpoint with mtdqn evaluate CHECKPOINT "
                           f"--max-episode-frames 108000 and give that evaluation\n")
