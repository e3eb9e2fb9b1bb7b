"""`compare` on hand-made evaluation reports: HNS, ratios, negative transfer flags and POI by hand."""

import json

import numpy as np
import pytest

from mtdqn.agents.studies.compare import CompareError, compare, load, load_merged, pool
from mtdqn.agents.core.evaluation import summarize, write_report
from mtdqn.envs import PROTOCOLS, reference_scores
from test_cli import mtdqn


def report(tmp_path, name, scores: dict[str, list[float]], frames: int = 400_000):
    out = tmp_path / name / "evals" / f"frames_{frames:09d}"
    write_report(summarize({g: np.array(s) for g, s in scores.items()}, protocol=PROTOCOLS["machado"], epsilon=0.001,
                           frames=dict.fromkeys(scores, frames)), out)
    return tmp_path / name


def at_hns(game, values):
    random, human = reference_scores()[game]
    return [random + v * (human - random) for v in values]


def test_hns_ratios_and_negative_transfer_by_hand(tmp_path):
    ref = report(tmp_path, "separate", {"pong": at_hns("pong", [0.2, 0.2, 0.2, 0.2]),
                                        "breakout": at_hns("breakout", [0.5, 0.5, 0.5, 0.5])})
    run = report(tmp_path, "shared", {"pong": at_hns("pong", [0.3, 0.3, 0.3, 0.3]),
                                      "breakout": at_hns("breakout", [0.1, 0.1, 0.1, 0.1]),
                                      "qbert": at_hns("qbert", [1.0])})
    result = compare([load(str(ref)), load(str(run))])
    pong, breakout = result["games"]  # qbert is only in one run: left out
    assert [pong["game"], breakout["game"]] == ["pong", "breakout"]
    assert pong["hns"]["shared"] == pytest.approx(0.3) and pong["ratio"]["shared"] == pytest.approx(1.5)
    assert breakout["ratio"]["shared"] == pytest.approx(0.2)
    assert pong["negative_transfer"] == [] and breakout["negative_transfer"] == ["shared"]
    assert breakout["difference_ci"]["shared"] == pytest.approx([-0.4, -0.4])
    # P(shared > separate): 1 on pong, 0 on breakout -> 0.5
    assert result["probability_of_improvement"]["shared"]["value"] == pytest.approx(0.5)
    assert result["aggregates"]["shared"]["mean"]["value"] == pytest.approx(0.2)
    assert result["games"][0]["frames"] == {"separate": 400_000, "shared": 400_000}


def test_a_ratio_needs_a_positive_reference(tmp_path):
    ref = report(tmp_path, "a", {"pong": at_hns("pong", [-0.1, 0.0])})
    run = report(tmp_path, "b", {"pong": at_hns("pong", [0.5, 0.5])})
    assert compare([load(str(ref)), load(str(run))])["games"][0]["ratio"]["b"] is None


def test_runs_that_cannot_be_compared_are_refused(tmp_path):
    ref = report(tmp_path, "a", {"pong": at_hns("pong", [0.1])})
    other = report(tmp_path, "b", {"breakout": at_hns("breakout", [0.1])})
    with pytest.raises(CompareError, match="share no game"):
        compare([load(str(ref)), load(str(other))])
    with pytest.raises(CompareError, match="at least 2"):
        compare([load(str(ref))])
    with pytest.raises(CompareError, match="no evaluation yet"):
        load(str(tmp_path))
    old = tmp_path / "old" / "eval.json"
    old.parent.mkdir()
    record = json.loads((ref / "evals" / "frames_000400000" / "eval.json").read_text())
    del record["games"][0]["scores"]
    old.write_text(json.dumps(record))
    with pytest.raises(CompareError, match="no per-episode scores"):
        load(str(old))


def test_compare_cli_errors_are_one_line(tmp_path):
    a = report(tmp_path, "a", {"pong": at_hns("pong", [0.1])})
    for args, message in (([a, a], "both named 'a'"), ([a, tmp_path / "nothing"], "neither a run folder"),
                          ([a, a, "--labels", "x"], "1 names for 2 runs")):
        proc = mtdqn("compare", *args, "--out", tmp_path / "cmp", cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_compare_logs_table_chart_and_aggregates_to_wandb(tmp_path):
    import wandb_records

    a = report(tmp_path, "a", {"pong": at_hns("pong", [0.1, 0.2])})
    b = report(tmp_path, "b", {"pong": at_hns("pong", [0.3, 0.4])})
    mtdqn("compare", a, b, "--track", "--out", tmp_path / "cmp", cwd=tmp_path)
    history = wandb_records.history(wandb_records.run_file(tmp_path / "cmp" / "wandb"))
    keys = set().union(*history)
    assert any(k.startswith("compare/table") for k in keys) and any(k.startswith("compare/chart") for k in keys)
    assert any(k.startswith("compare/iqm_curves") for k in keys)  # b is a run folder with periodic evaluations
    row = next(h for h in history if "compare/b/probability_of_improvement" in h)
    assert row["compare/b/probability_of_improvement"] == pytest.approx(1.0)
    assert row["compare/a/hns_mean"] == pytest.approx(0.15)


def test_single_game_runs_join_and_time_to_score_is_the_first_eval_at_the_reference_iqm(tmp_path):
    """SB3-style single-game runs joined with '+' form one reference: 4 episodes at HNS 0.2 and 4 at 0.4,
    IQM 0.3 (the middle four). A multi-task run's periodic IQMs 0.15, 0.325, 0.5 first match it at 200k."""
    a = report(tmp_path, "sb3-pong", {"pong": at_hns("pong", [0.2] * 4)})
    b = report(tmp_path, "sb3-breakout", {"breakout": at_hns("breakout", [0.4] * 4)})
    for frames, (p, q) in zip((100_000, 200_000, 300_000), ((0.1, 0.2), (0.3, 0.35), (0.5, 0.5))):
        run = report(tmp_path, "mt", {"pong": at_hns("pong", [p] * 4), "breakout": at_hns("breakout", [q] * 4)}, frames)
    slow = report(tmp_path, "slow", {"pong": at_hns("pong", [0.0] * 4), "breakout": at_hns("breakout", [0.1] * 4)})
    ref = load_merged(f"{a}+{b}", "sb3")
    assert ref.label == "sb3" and sorted(ref.hns) == ["breakout", "pong"] and ref.iqm_curve is None
    result = compare([ref, load(str(run)), load(str(slow))])
    assert result["aggregates"]["sb3"]["iqm"]["value"] == pytest.approx(0.3)
    assert load(str(run)).iqm_curve == [(100_000, pytest.approx(0.15)), (200_000, pytest.approx(0.325)),
                                        (300_000, pytest.approx(0.5))]
    assert result["frames_to_reference_iqm"] == {"mt": 200_000, "slow": None}
    assert result["aggregates"]["mt"]["iqm"]["value"] == pytest.approx(0.5)  # the final evaluation is compared
    with pytest.raises(CompareError, match="'pong' twice"):
        load_merged(f"{a}+{a}")
    text = mtdqn("compare", f"{a}+{b}", run, "--labels", "sb3,mt", "--out", tmp_path / "cmp", cwd=tmp_path).stdout
    assert "| mt | 200,000 |" in text and "IQM >= sb3's final IQM (0.300)" in text
    assert (tmp_path / "cmp" / "compare_curves.png").stat().st_size > 10_000  # the IQM curve against sb3's line


def test_a_run_stands_for_its_most_trained_agent_and_its_deliberate_evaluation(tmp_path):
    a = report(tmp_path, "a", {"pong": at_hns("pong", [0.1])}, frames=200_000)
    report(tmp_path, "a", {"pong": at_hns("pong", [0.2])}, frames=400_000)
    assert load(str(a)).hns["pong"] == pytest.approx([0.2])  # the last periodic evaluation
    for name, frames, value in (("frames_000200000-evaluate", 200_000, 0.9), ("frames_000400000-evaluate", 400_000, 0.3)):
        write_report(summarize({"pong": np.array(at_hns("pong", [value] * 30))}, protocol=PROTOCOLS["machado"],
                               epsilon=0.001, frames={"pong": frames}), a / "evals" / name)
    run = load(str(a))  # `mtdqn evaluate --episodes 30` of the final checkpoint, not of an older one
    assert run.hns["pong"] == pytest.approx([0.3] * 30) and run.source.endswith("frames_000400000-evaluate/eval.json")
    assert [f for f, _ in run.iqm_curve] == [200_000, 400_000]  # the learning curve is still the periodic one


def test_seeds_given_one_label_pool_their_episodes(tmp_path):
    """Two seeds of 'shared' (pong HNS 0.1 and 0.3, two episodes each) against one 'separate' at 0.2: pooled, the
    mean is 0.2 and the four episodes are the run; P(shared > separate) = 0.5 (two above, two below)."""
    ref = report(tmp_path, "separate", {"pong": at_hns("pong", [0.2] * 4)})
    s0 = report(tmp_path / "s0", "shared", {"pong": at_hns("pong", [0.1, 0.1])})
    s1 = report(tmp_path / "s1", "shared", {"pong": at_hns("pong", [0.3, 0.3])})
    pooled = pool([load(str(s0)), load(str(s1))], "shared")
    assert pooled.hns["pong"] == pytest.approx([0.1, 0.1, 0.3, 0.3]) and pooled.iqm_curve == [(400_000, pytest.approx(0.2))]
    result = compare([load(str(ref)), pooled])
    assert result["games"][0]["hns"]["shared"] == pytest.approx(0.2)
    assert result["probability_of_improvement"]["shared"]["value"] == pytest.approx(0.5) and not result["warnings"]
    one_seed = compare([load(str(ref)), load(str(s1))])  # 4 episodes against 2: P from the first 2 of each
    assert one_seed["warnings"] == ["P(shared > separate) uses the first 2 episodes of each game: separate had more "
                                    "(pool as many seeds on each side to use them all)"]
    text = mtdqn("compare", ref, s0, s1, "--labels", "separate,shared,shared", "--out", tmp_path / "cmp",
                 cwd=tmp_path).stdout
    assert "| pong | 400,000 | 0.200 | 0.200 |" in text
    other = report(tmp_path / "s2", "shared", {"breakout": at_hns("breakout", [0.1])})
    with pytest.raises(CompareError, match="cover different games"):
        pool([load(str(s0)), load(str(other))], "shared")
    proc = mtdqn("compare", ref, s0, s1, "--out", tmp_path / "cmp2", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "same name twice pools seeds" in proc.stderr
