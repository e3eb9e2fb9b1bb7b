"""`compare` on hand-made evaluation reports: HNS over runs, ratios, negative transfer and POI by hand."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mtdqn.agents.core.evaluation import summarize, write_report
from mtdqn.agents.core.machine import cpu_info, name
from mtdqn.agents.studies.compare import CompareError, compare, load, load_merged
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
    result = compare({"separate": [load(str(ref))], "shared": [load(str(run))]})
    pong, breakout = result["games"]  # qbert is only in one run: left out
    assert [pong["game"], breakout["game"]] == ["pong", "breakout"]
    assert pong["hns"]["shared"] == pytest.approx(0.3) and pong["ratio"]["shared"] == pytest.approx(1.5)
    assert breakout["ratio"]["shared"] == pytest.approx(0.2) and breakout["std"]["shared"] is None
    # one run a side: however tight its episodes, nothing is decided over seeds
    assert breakout["negative_transfer"] == [] and breakout["undecided"] == ["shared"]
    assert breakout["difference_ci"]["shared"] is None
    assert result["aggregates"]["shared"]["iqm"]["ci_low"] is None and result["labels"]["shared"]["runs"] == 1
    # P(shared > separate): 1 on pong, 0 on breakout -> 0.5
    assert result["probability_of_improvement"]["shared"]["value"] == pytest.approx(0.5)
    assert result["aggregates"]["shared"]["mean"]["value"] == pytest.approx(0.2)
    assert result["games"][0]["frames"] == {"separate": 400_000, "shared": 400_000}


def test_a_ratio_needs_a_positive_reference(tmp_path):
    ref = report(tmp_path, "a", {"pong": at_hns("pong", [-0.1, 0.0])})
    run = report(tmp_path, "b", {"pong": at_hns("pong", [0.5, 0.5])})
    assert compare({"a": [load(str(ref))], "b": [load(str(run))]})["games"][0]["ratio"]["b"] is None


def test_runs_that_cannot_be_compared_are_refused(tmp_path):
    ref = report(tmp_path, "a", {"pong": at_hns("pong", [0.1])})
    other = report(tmp_path, "b", {"breakout": at_hns("breakout", [0.1])})
    with pytest.raises(CompareError, match="share no game"):
        compare({"a": [load(str(ref))], "b": [load(str(other))]})
    with pytest.raises(CompareError, match="at least 2"):
        compare({"a": [load(str(ref))]})
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
                          ([a, a, "--labels", "x"], "--labels has 1 name for 2 runs")):
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
    assert ref.label == "sb3" and sorted(ref.hns) == ["breakout", "pong"] and ref.curves is None
    result = compare({"sb3": [ref], "mt": [load(str(run))], "slow": [load(str(slow))]})
    assert result["aggregates"]["sb3"]["iqm"]["value"] == pytest.approx(0.3)
    assert [(p["frames"], p["value"]) for p in result["curves"]["mt"]] == [
        (100_000, pytest.approx(0.15)), (200_000, pytest.approx(0.325)), (300_000, pytest.approx(0.5))]
    assert result["frames_to_reference_iqm"] == {"mt": 200_000, "slow": None}
    assert result["aggregates"]["mt"]["iqm"]["value"] == pytest.approx(0.5)  # the final evaluation is compared
    with pytest.raises(CompareError, match="'pong' twice"):
        load_merged(f"{a}+{a}")
    text = mtdqn("compare", f"{a}+{b}", run, "--labels", "sb3,mt", "--out", tmp_path / "cmp", cwd=tmp_path).stdout
    assert "| mt | 200,000 |" in text and "IQM over runs >= sb3's final IQM (0.300)" in text
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
    assert [f for f, _ in run.curves["pong"]] == [200_000, 400_000]  # the learning curve is still the periodic one
    # a later one-game `evaluate --games pong` of a two-game run does not stand for the run
    two = report(tmp_path, "two", {"pong": at_hns("pong", [0.1]), "breakout": at_hns("breakout", [0.2])})
    write_report(summarize({"pong": np.array(at_hns("pong", [0.5] * 30))}, protocol=PROTOCOLS["machado"],
                           epsilon=0.001, frames={"pong": 400_000}), two / "evals" / "frames_000400000-evaluate")
    assert sorted(load(str(two)).hns) == ["breakout", "pong"]


def seeds(tmp_path, label, values: list[float], game="pong", episodes=10):
    """One run folder per seed, each scoring `values[k]` HNS on every one of its `episodes` episodes."""
    return [report(tmp_path / f"s{k}", label, {game: at_hns(game, [v] * episodes)}) for k, v in enumerate(values)]


def test_seeds_are_the_runs_tight_episodes_do_not_narrow_an_interval_when_seeds_disagree(tmp_path):
    """Each seed's 10 episodes are identical (no spread within a run) but the 'wild' seeds score 0.0, 0.5 and 1.0:
    the interval over runs is wide and decides nothing, while 'steady' seeds 0.48-0.52 give a narrow one."""
    steady = [load(str(p)) for p in seeds(tmp_path / "a", "steady", [0.48, 0.5, 0.52])]
    wild = [load(str(p)) for p in seeds(tmp_path / "b", "wild", [0.0, 0.5, 1.0])]
    result = compare({"steady": steady, "wild": wild})
    row = result["games"][0]
    assert row["hns"] == {"steady": pytest.approx(0.5), "wild": pytest.approx(0.5)}
    assert row["runs"] == {"steady": 3, "wild": 3} and row["std"]["wild"] == pytest.approx(0.5)
    low, high = row["difference_ci"]["wild"]
    assert low <= -0.3 and high >= 0.3 and row["negative_transfer"] == [] and row["undecided"] == []
    two = compare({"steady": steady[:2], "wild": wild[:2]})["games"][0]  # an interval, but no decision from 2 runs
    assert two["difference_ci"]["wild"] is not None and two["undecided"] == ["wild"]
    wide, narrow = result["aggregates"]["wild"]["mean"], result["aggregates"]["steady"]["mean"]
    assert wide["ci_high"] - wide["ci_low"] >= 0.6 and narrow["ci_high"] - narrow["ci_low"] <= 0.05
    # P(wild > steady) by hand: wild's 1.0 beats all 3, its 0.5 beats 0.48 and ties 0.5 (half), 0.0 beats none
    assert result["pairs"]["steady > wild"]["value"] == pytest.approx(1 - (3 + 1.5) / 9)
    assert result["probability_of_improvement"]["wild"]["value"] == pytest.approx((3 + 1.5) / 9)


def test_negative_transfer_is_decided_over_runs(tmp_path):
    separate = [load(str(p)) for p in seeds(tmp_path / "a", "separate", [0.48, 0.5, 0.52])]
    shared = [load(str(p)) for p in seeds(tmp_path / "b", "shared", [0.08, 0.1, 0.12])]
    row = compare({"separate": separate, "shared": shared})["games"][0]
    assert row["negative_transfer"] == ["shared"] and row["difference_ci"]["shared"][1] < 0
    # Welch by hand: difference -0.4, each side's variance 0.0004 over 3 runs, df 4, t(0.975, 4) = 2.776445
    half = 2.776445 * (2 * 0.0004 / 3) ** 0.5
    assert row["difference_ci"]["shared"] == pytest.approx([-0.4 - half, -0.4 + half])


def test_each_runs_mean_over_games_is_compared_with_welchs_interval(tmp_path):
    # two games; per-run means over the games: a 0.3, 0.4, 0.5 (mean 0.4, variance 0.01), b 0.6, 0.8 (mean 0.7,
    # variance 0.02): difference 0.3, se^2 = 0.01/3 + 0.02/2 = 0.04/3, Welch df = (0.04/3)^2 / ((0.01/3)^2/2 + 0.01^2)
    def runs(folder, label, means):
        return [load(str(report(tmp_path / folder / f"s{k}", label, {"pong": at_hns("pong", [m - 0.1] * 4),
                                                                     "breakout": at_hns("breakout", [m + 0.1] * 4)})))
                for k, m in enumerate(means)]

    result = compare({"a": runs("x", "a", [0.3, 0.4, 0.5]), "b": runs("y", "b", [0.6, 0.8])})
    d = result["mean_difference"]["b"]
    se, df = (0.04 / 3) ** 0.5, (0.04 / 3) ** 2 / ((0.01 / 3) ** 2 / 2 + 0.01 ** 2)
    half = stats.t.ppf(0.975, df) * se
    assert (d["value"], d["ci_low"], d["ci_high"]) == pytest.approx((0.3, 0.3 - half, 0.3 + half))
    assert d["p"] == pytest.approx(2 * stats.t.sf(0.3 / se, df)) and d["runs"] == [2, 3]
    assert (d["mean"], d["std"]) == pytest.approx((0.7, 0.02 ** 0.5))
    one = compare({"a": runs("z", "a", [0.3, 0.4]), "b": runs("w", "b", [0.6])})["mean_difference"]["b"]
    assert one["ci_low"] is None and one["p"] is None and one["value"] == pytest.approx(0.25)


def test_the_cli_takes_seeds_per_label_and_says_how_many(tmp_path):
    ref = seeds(tmp_path / "a", "separate", [0.2, 0.3])
    shared = seeds(tmp_path / "b", "shared", [0.1, 0.3, 0.5])
    text = mtdqn("compare", *ref, *shared, "--labels", "separate,separate,shared,shared,shared",
                 "--out", tmp_path / "cmp", cwd=tmp_path).stdout
    assert "Runs per label: separate 2, shared 3." in text
    assert "| pong | 400,000 | 0.250 ± 0.071 | 0.300 ± 0.200 | 1.20 | -; undecided (< 3 runs a side): shared |" in text
    assert "| shared | 3 | 400,000 |" in text and "| separate > shared | 2 vs 3 |" in text
    runs_csv = (tmp_path / "cmp" / "compare_runs.csv").read_text().splitlines()
    assert runs_csv[0] == "label,run,game,hns,episodes,frames" and len(runs_csv) == 6
    assert (tmp_path / "cmp" / "compare_profiles.png").stat().st_size > 10_000
    proc = mtdqn("compare", ref[0], shared[0], shared[1], "--out", tmp_path / "cmp2", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "makes them seeds of one label" in proc.stderr
    with pytest.raises(CompareError, match="given twice: each run counts once"):  # a seed counted twice
        compare({"separate": [load(str(ref[0]))], "shared": [load(str(shared[0])), load(str(shared[0]))]})


def test_profile_thresholds_run_over_the_scores_and_at_least_from_0_to_1():
    from mtdqn.agents.studies.compare import profile_taus

    taus = profile_taus({"a": np.array([[0.2, 0.5]])})
    assert (taus[0], taus[-1], len(taus)) == (0.0, 1.0, 41)
    taus = profile_taus({"a": np.array([[-0.3, 0.4]]), "b": np.array([[2.5]])})
    assert (taus[0], taus[-1]) == (-0.3, 2.5)


def evaluated(tmp_path, name, episodes: int = 2, epsilon: float = 0.001, cap: int = 108_000, protocol="machado"):
    """A run folder whose one evaluation played pong `episodes` times at HNS 0.2, under `protocol` with its
    episodes capped at `cap` frames."""
    played = replace(PROTOCOLS[protocol], max_frames_per_episode=cap)
    write_report(summarize({"pong": np.array(at_hns("pong", [0.2] * episodes))}, protocol=played, epsilon=epsilon,
                           frames={"pong": 400_000}), tmp_path / name / "evals" / "frames_000400000")
    return tmp_path / name


def test_compare_warns_once_per_evaluation_setting_the_runs_differ_in(tmp_path):
    a = evaluated(tmp_path, "a")
    b = evaluated(tmp_path, "b", episodes=3, epsilon=0.05, cap=400, protocol="classic")
    c = evaluated(tmp_path, "c")
    result = compare({"a": [load(str(a)), load(str(c))], "b": [load(str(b))]})
    assert result["warnings"] == [
        "the runs were evaluated with different episode caps (a 108,000 frames; b 400 frames): their scores are not "
        "comparable",
        "the runs were evaluated with different epsilons (a 0.001; b 0.05): their scores are not comparable",
        "the runs were evaluated with different protocols (a machado; b classic): their scores are not comparable",
        "the runs were evaluated with different numbers of episodes per game (a 2; b 3): their scores are not "
        "comparable"]
    assert compare({"a": [load(str(a))], "c": [load(str(c))]})["warnings"] == []
    cut = [evaluated(tmp_path, f"cut{k}", cap=400) for k in range(2)]
    assert compare({"x": [load(str(cut[0]))], "y": [load(str(cut[1]))]})["warnings"] == [
        "every run's episodes were cut at 400 frames, below the protocol's cap: the scores are those of cut-short "
        "episodes, not comparable with whole-episode ones"]
    proc = mtdqn("compare", a, b, "--out", tmp_path / "cmp", cwd=tmp_path)
    assert [l for l in proc.stderr.splitlines() if l.startswith("mtdqn: warning: the runs were evaluated")] == [
        f"mtdqn: warning: {w}" for w in result["warnings"]]


def test_compare_never_writes_into_a_run_and_says_when_it_replaces_a_comparison(tmp_path):
    a, b = evaluated(tmp_path, "a"), evaluated(tmp_path, "b")
    for run in (a, b):
        (run / "config.yaml").write_text("suite: pong\n")
        (run / "command.txt").write_text("mtdqn train --suite pong\n")
    for out, cwd, where in ((a, tmp_path, "is a run folder"), (a / "evals" / "cmp", tmp_path,
                                                                 f"lies in the run folder {str(a)!r}"),
                            (Path("runs/compare"), a, f"lies in the run folder {str(a)!r}")):  # the default --out
        proc = mtdqn("compare", a, b, *(["--out", out] if cwd == tmp_path else []), cwd=cwd, check=False)
        assert proc.returncode == 2 and proc.stderr == (
            f"mtdqn: error: --out {str(out)!r} {where}: a comparison gets a folder of its own, e.g. --out "
            "runs/compare-NAME\n")
    assert sorted(p.name for p in a.iterdir()) == ["command.txt", "config.yaml", "evals"]
    assert sorted(p.name for p in (a / "evals").iterdir()) == ["frames_000400000"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me\n")
    proc = mtdqn("compare", a, b, "--out", tmp_path / "notes", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr == (
        f"mtdqn: error: --out {str(tmp_path / 'notes')!r} holds 'todo.txt' and no comparison (compare.json): choose a "
        f"new or empty folder, e.g. {tmp_path / 'notes' / 'compare'}\n")
    first = mtdqn("compare", a, b, "--out", tmp_path / "cmp", cwd=tmp_path).stderr
    assert "replacing" not in first and (tmp_path / "cmp" / "compare_curves.png").is_file()  # run folders: curves
    evals = [run / "evals" / "frames_000400000" for run in (b, a)]  # evaluation folders: no curves
    again = mtdqn("compare", *evals, "--labels", "b,a", "--out", tmp_path / "cmp", cwd=tmp_path).stderr.splitlines()
    assert f"mtdqn: replacing the earlier comparison in {tmp_path / 'cmp'}" in again
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["reference"] == "b"
    assert not (tmp_path / "cmp" / "compare_curves.png").exists()  # nothing of the earlier comparison stays


def test_training_time_sums_every_segment_of_a_run(tmp_path):
    # two segments: the clock runs to 20 s, a resume restarts it, it ends at 18 s (the final wall time): 38 s
    a = report(tmp_path, "a", {"pong": at_hns("pong", [0.2] * 4)})
    records = [{"perf/elapsed_s": 10.0}, {"train/loss": 1.0}, {"perf/elapsed_s": 20.0}, {"perf/elapsed_s": 5.0},
               {"perf/elapsed_s": 15.0}, {"perf/wall_time_s": 18.0}]
    (a / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    b = report(tmp_path, "b", {"pong": at_hns("pong", [0.3] * 4)})
    (b / "metrics.jsonl").write_text(json.dumps({"perf/elapsed_s": 3600.0}) + "\n")
    c = report(tmp_path, "c", {"pong": at_hns("pong", [0.4] * 4)})  # no metrics: not timed
    # a's segments ran on two machines (machine.jsonl, one line per segment), b's machine is not recorded
    amd = {"cpu": "AMD EPYC 7B13", "amx": False, "cores": 2}
    xeon = {"cpu": "Intel(R) Xeon(R) Processor", "amx": True, "cores": 2}
    (a / "machine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (amd, xeon, amd)))
    assert load(str(a)).seconds == pytest.approx(38.0) and load(str(c)).seconds is None
    assert load(str(a)).machines == ["AMD EPYC 7B13, 2 cores", "Intel(R) Xeon(R) Processor with AMX, 2 cores"]
    result = compare({"x": [load(str(a))], "y": [load(str(b)), load(str(c))]})
    assert result["training_hours"] == {
        "x": {"runs": 1, "mean": pytest.approx(38 / 3600), "std": None,
              "machines": ["AMD EPYC 7B13, 2 cores", "Intel(R) Xeon(R) Processor with AMX, 2 cores"]},
        "y": {"runs": 1, "mean": pytest.approx(1.0), "std": None, "machines": ["not recorded"]}}
    assert result["warnings"][-1] == (
        "the training times come from 2 machines (AMD EPYC 7B13, 2 cores; Intel(R) Xeon(R) Processor with AMX, "
        "2 cores) and runs whose machine is not recorded: a time is a cost beside another only where both ran on one machine (per label in "
        "the training time table)")
    text = mtdqn("compare", a, b, c, "--labels", "x,y,y", "--out", tmp_path / "cmp", cwd=tmp_path).stdout
    assert ("| x | 1 | 0.01 | AMD EPYC 7B13, 2 cores; Intel(R) Xeon(R) Processor with AMX, 2 cores |" in text
            and "| y | 1 | 1.00 | not recorded |" in text)
    (a / "machine.jsonl").write_text(json.dumps(amd) + "\n")
    (b / "machine.jsonl").write_text(json.dumps(amd) + "\n")  # one machine: no warning
    result = compare({"x": [load(str(a))], "y": [load(str(b))]})
    assert not any("machines" in w for w in result["warnings"])


def test_the_machine_is_read_from_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 sse\n\n"
                                      "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 sse\n")
    assert cpu_info(str(tmp_path / "cpuinfo")) == ("AMD EPYC 7B13", False)
    (tmp_path / "cpuinfo").write_text("model name : Intel(R) Xeon(R) Platinum\nflags : avx512f amx_bf16 amx_tile\n")
    assert cpu_info(str(tmp_path / "cpuinfo")) == ("Intel(R) Xeon(R) Platinum", True)
    assert name({"cpu": "X", "amx": False, "cores": 16, "gpu": "NVIDIA H100"}) == "NVIDIA H100"
