"""`mtdqn atlas` on hand-made study folders (every number by hand) and on copies of the committed MinAtar runs.

Three games A, B, F; each alone at 0.2, 0.5, 0.8 (means of 3 runs), each pair with 3 runs set so that the realized
matrix [source, target] is B->A +0.30, A->B -0.25, F->A +0.10, A->F -0.35, F->B -0.10, B->F -0.45.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from mtdqn.agents.multitask import conflict
from mtdqn.agents.multitask.grouping import best_partition, read_affinity
from mtdqn.agents.multitask.sharing import GroupsError
from mtdqn.agents.studies.atlas import analyze, rank_correlation, rho_without_each
from mtdqn.agents.studies.atlas_runs import collect
from mtdqn.scripts.cli import main
from mtdqn.envs.statistics import detectable_difference
from test_cli import mtdqn

ROOT = Path(__file__).resolve().parents[1]
A, B, F = "minatar/asterix", "minatar/breakout", "minatar/freeway"
GAMES = [A, B, F]
ALONE = {A: [0.1, 0.2, 0.3], B: [0.4, 0.5, 0.6], F: [0.7, 0.8, 0.9]}
PAIRS = {(A, B): {A: [0.4, 0.5, 0.6], B: [0.15, 0.25, 0.35]},
         (A, F): {A: [0.2, 0.3, 0.4], F: [0.35, 0.45, 0.55]},
         (B, F): {B: [0.3, 0.4, 0.5], F: [0.25, 0.35, 0.45]}}
REALIZED = {(B, A): 0.30, (A, B): -0.25, (F, A): 0.10, (A, F): -0.35, (F, B): -0.10, (B, F): -0.45}
ALL = {A: [0.25, 0.35, 0.45], B: [0.5, 0.6, 0.7], F: [0.1, 0.2, 0.3]}
COSINE = {(A, B): 0.3, (A, F): 0.1, (B, F): -0.2}  # symmetric
REPS = ["--reps", "200"]


def run(root: Path, variant: str, games: list[str], seed: int, scores: dict, budget: int = 1000, **options) -> Path:
    folder = root / variant / "+".join(g.replace("/", "-") for g in games) / f"seed{seed}"
    (folder / "evals" / f"frames_{budget:09d}").mkdir(parents=True)
    config = {"suite": ",".join(games), "frames_per_game": budget, "seed": seed, "sharing": "shared",
              "learning_rate": 0.00025, **options}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "evals" / f"frames_{budget:09d}" / "eval.json").write_text(json.dumps(
        {"games": [{"game": g, "frames": budget, "hns": scores[g], "scores": []} for g in games]}))
    return folder


def conflict_csv(folder: Path, k: int) -> None:
    """Cosine COSINE at every measurement; affinity k x realized at 600 and 1000 frames, -10 x realized at 100."""
    rows = ["frames_per_game,update,metric,source,target,value"]
    for frames, scale in ((100, -10.0), (600, k), (1000, k)):
        for s in GAMES:
            for t in GAMES:
                cos = 1.0 if s == t else COSINE.get((s, t), COSINE.get((t, s)))
                aff = 0.5 if s == t else scale * REALIZED[s, t]
                rows += [f"{frames},{frames},cosine,{s},{t},{cos}", f"{frames},{frames},affinity,{s},{t},{aff}"]
    (folder / "conflict.csv").write_text("\n".join(rows) + "\n")


def study(root: Path) -> Path:
    for seed in range(3):
        for g in GAMES:
            run(root, "shared", [g], seed, {g: ALONE[g][seed]})
        for pair, scores in PAIRS.items():
            run(root, "shared", list(pair), seed, {g: s[seed] for g, s in scores.items()})
        conflict_csv(run(root, "shared", GAMES, seed, {g: s[seed] for g, s in ALL.items()}), seed + 1)
    learned = run(root, "learned", GAMES, 0, {g: s[0] for g, s in ALL.items()}, sharing="learned")
    jaccard = {(s, t): 1.0 if s == t else 0.2 + 0.1 * (GAMES.index(s) + GAMES.index(t)) for s in GAMES for t in GAMES}
    (learned / "overlap.csv").write_text(f"layer,source,target,jaccard\nconv1,{A},{B},0.9\n"
                                         + "".join(f"all,{s},{t},{v}\n" for (s, t), v in jaccard.items()))
    return root


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    root = study(tmp_path_factory.mktemp("atlas"))
    return root, analyze(collect([str(root)]), ["cosine", "affinity", "overlap"], since_frames=500, reps=200)


def test_every_cell_of_a_complete_atlas_by_hand(complete):
    _, atlas = complete
    assert atlas.games == GAMES
    for (source, target), value in REALIZED.items():
        cell = atlas.cells[source, target]
        assert cell.difference["value"] == pytest.approx(value, abs=1e-12)
        assert atlas.realized[GAMES.index(source), GAMES.index(target)] == pytest.approx(value, abs=1e-12)
        assert cell.runs == (3, 3) and cell.budget == 1000
    helps, hurts = atlas.cells[B, A], atlas.cells[A, B]
    # every run of A with B beats every run of A alone: P = 1 in every resample; B with A the reverse
    assert helps.improvement["value"] == 1.0 and (helps.improvement["ci_low"], helps.improvement["ci_high"]) == (1, 1)
    assert hurts.improvement["value"] == 0.0 and hurts.improvement["ci_high"] == 0.0
    assert helps.verdict == "helps" and 0 < helps.difference["ci_low"] <= 0.3 <= helps.difference["ci_high"]
    assert hurts.verdict == "hurts" and hurts.difference["ci_high"] < 0
    # relative to the mean alone: A gains 0.3 on 0.2 (+150%), B loses 0.25 on 0.5 (-50%)
    assert (helps.relative, hurts.relative) == pytest.approx((1.5, -0.5))
    # Welch by hand for B -> A: 0.4-0.6 against 0.1-0.3, each side's variance 0.01 over 3 runs: t = 0.3 / se, df 4
    se = math.sqrt(2 * 0.01 / 3)
    assert helps.difference["p"] == pytest.approx(2 * stats.t.sf(0.3 / se, 4))
    assert (helps.difference["ci_low"], helps.difference["ci_high"]) == pytest.approx(
        (0.3 - stats.t.ppf(0.975, 4) * se, 0.3 + stats.t.ppf(0.975, 4) * se))
    # what 3 runs a side at their pooled spread (0.1 on both sides) would find 4 times in 5
    assert helps.difference["detectable"] == pytest.approx(0.1 * detectable_difference(3, 3, 1.0))
    # q: Benjamini-Hochberg over the 9 decided cells (6 ordered pairs, 3 games of the all-games run), by hand
    decided = [*atlas.cells.values(), *next(iter(atlas.groups.values()))]
    p = np.array([c.difference["p"] for c in decided])
    order = np.argsort(p)
    q = np.minimum.accumulate((p[order] * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1]
    assert [c.difference["q"] for c in np.array(decided)[order]] == pytest.approx(np.minimum(q, 1))
    # the all-games run, game by game against alone
    (suite, cells), = atlas.groups.items()
    assert suite == tuple(GAMES) and [c.target for c in cells] == GAMES
    for c in cells:
        assert c.with_scores.tolist() == ALL[c.target] and c.alone_scores.tolist() == ALONE[c.target]
        assert c.difference["value"] == pytest.approx(np.mean(ALL[c.target]) - np.mean(ALONE[c.target]))
    assert cells[2].improvement["value"] == 0.0 and cells[2].verdict == "hurts"  # F: 0.1-0.3 against 0.7-0.9


def test_predictors_are_averaged_over_measurements_and_runs_and_rank_correlated(complete):
    _, atlas = complete
    cosine, affinity, overlap = (atlas.predictors[n] for n in ("cosine", "affinity", "overlap"))
    assert len(cosine.runs) == 3 and len(overlap.runs) == 1
    for (s, t), value in REALIZED.items():
        i, j = GAMES.index(s), GAMES.index(t)
        # since 500 frames: runs k = 1, 2, 3 measured k x realized, so the mean over runs is 2 x realized
        assert affinity.matrix[i, j] == pytest.approx(2 * value)
        assert cosine.matrix[i, j] == pytest.approx(COSINE.get((s, t), COSINE.get((t, s))))
        assert overlap.matrix[i, j] == pytest.approx(0.2 + 0.1 * (i + j))
    assert affinity.correlation["value"] == pytest.approx(1.0) and affinity.correlation["cells"] == 6
    # cosine's ranks over A>B, A>F, B>A, B>F, F>A, F>B: 5.5 3.5 5.5 1.5 3.5 1.5 (ties share), realized's 3 2 6 1 5 4:
    # sum dx dy = 8, sum dx^2 = 16, sum dy^2 = 17.5
    assert cosine.correlation["value"] == pytest.approx(8 / math.sqrt(16 * 17.5))
    assert cosine.correlation["ci_low"] <= cosine.correlation["value"] <= cosine.correlation["ci_high"]
    assert cosine.correlation["without"] == dict.fromkeys(GAMES)  # 3 games: 2 cells left without any one
    assert overlap.correlation["ci_low"] is None
    assert overlap.correlation["interval"] == "no interval: 1 run of the predictor"
    assert rank_correlation(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == pytest.approx(-1.0)


def test_since_frames_changes_what_is_averaged(complete):
    root, _ = complete
    early = analyze(collect([str(root)]), ["affinity"], since_frames=0, reps=200)
    # with the 100-frame measurement (-10 x realized): run k's mean is (2k - 10)/3 x realized, all negative
    assert early.predictors["affinity"].matrix[1, 0] == pytest.approx((2 * 2 - 10) / 3 * 0.3)
    assert early.predictors["affinity"].correlation["value"] == pytest.approx(-1.0)


def test_the_command_writes_a_matrix_mtdqn_group_reads(complete, tmp_path, capsys):
    root, _ = complete
    main(["atlas", str(root), "--out", str(tmp_path / "out"), *REPS])
    printed = capsys.readouterr().out
    for name in ("atlas.md", "atlas.json", "realized.csv", "cosine.csv", "affinity.csv", "overlap.csv", "atlas.png",
                 "atlas_scatter.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert printed == (tmp_path / "out" / "atlas.md").read_text() + "\n"
    assert f"`mtdqn atlas {root} --out {tmp_path / 'out'} --reps 200`" in printed
    assert f"| {A} | {B} | 3 / 3 | 1,000 | 0.500 ± 0.100 | 0.200 ± 0.100 | +0.300 [" in printed
    games, matrix = read_affinity(str(tmp_path / "out" / "realized.csv"))
    assert games == GAMES and matrix[1, 0] == pytest.approx(0.30) and matrix[0, 1] == pytest.approx(-0.25)
    # higher = groups well: A and B gain +0.30 - 0.25 > 0 together, F loses with either
    assert best_partition(matrix, 3)[0] == [0, 0, 1]


def test_an_unfinished_learned_run_gives_no_gate_overlap(tmp_path):
    """Its overlap.csv is the gates at its last log, not at its budget: like every run, it counts once finished."""
    root = study(tmp_path / "s")
    learned = root / "learned" / "+".join(g.replace("/", "-") for g in GAMES) / "seed0"
    assert list(collect([str(root)]).learned) == [tuple(GAMES)]
    shutil.rmtree(learned / "evals")
    runs = collect([str(root)])
    assert runs.learned == {}
    assert any(n.startswith("1 unfinished run(s) left out") and str(learned) in n for n in runs.notes)


def test_a_half_done_study_shows_missing_cells_and_one_run_without_an_interval(tmp_path, capsys):
    root = study(tmp_path / "s")
    shutil.rmtree(root / "shared" / "minatar-breakout+minatar-freeway")
    for seed in (1, 2):
        shutil.rmtree(root / "shared" / "minatar-asterix+minatar-freeway" / f"seed{seed}")
    (root / "shared" / "minatar-breakout+minatar-freeway" / "seed0").mkdir(parents=True)  # started, nothing yet
    (root / "shared" / "minatar-breakout+minatar-freeway" / "seed0" / "config.yaml").write_text(
        yaml.safe_dump({"suite": f"{B},{F}", "frames_per_game": 1000, "seed": 0, "sharing": "shared"}))
    main(["atlas", str(root), "--out", str(tmp_path / "out"), "--predictors", "affinity", *REPS])
    captured = capsys.readouterr()
    assert "1 unfinished run(s) left out" in captured.err
    assert f"| {A} | {F} | 1 / 3 | 1,000 | 0.200 | 0.200 ± 0.100 | +0.000 (no interval: 1 run on a side) | +0% " \
           "| - | - | 0.50 (no interval: 1 run on a side) | no interval (1 run on a side) |" in captured.out
    assert f"| {B} | {F} | 0 / 3 | - | - | 0.500 ± 0.100 | - | - | - | - | - | missing (no runs yet) |" in captured.out
    assert "4 of 6 ordered pairs have runs" in captured.out
    assert "| TAG affinity (source -> target) | 3 | 4 | " in captured.out  # 4 cells: A-B both ways, A-F both ways
    with pytest.raises(GroupsError, match="missing or infinite"):  # mtdqn group waits for every cell
        read_affinity(str(tmp_path / "out" / "realized.csv"))


def error_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mtdqn: error: ")
    return err


@pytest.mark.parametrize("case, needles", [
    ("empty", ["holds no run folder"]),
    ("no alone", [f"{A}+{B}+{F} has 3 run(s) but {F} has no finished alone run"]),
    ("budgets", ["mixed budgets", "1,000", "2,000"]),
    ("predictor", ["unknown predictor 'gates': choose from cosine, affinity, overlap"]),
    ("variants", ["runs of", "differ in learning_rate", "--variants"]),
    ("variant", ["--variants nope: no run", "the variants there are learned, shared"]),
    ("roles", [f"{A}+{B} and {A} alone differ in learning_rate: 0.00025 in", "0.001 in",
               "differ only in what shares the torso"]),
    ("since", ["conflict.csv has no measurement at or after --since-frames 5,000: lower it"]),
    ("unfinished", ["no finished single-game or hard-sharing run", "1 unfinished"]),
])
def test_bad_input_is_one_line_exit_2_and_nothing_is_written(tmp_path, capsys, case, needles):
    root = tmp_path / "s"
    if case != "empty":
        study(root)
    else:
        (root / "sub").mkdir(parents=True)
    argv = ["atlas", str(root), "--out", str(tmp_path / "out"), *REPS]
    if case == "no alone":
        shutil.rmtree(root / "shared" / "minatar-freeway")
    elif case == "budgets":
        shutil.rmtree(root / "shared" / "minatar-asterix" / "seed2")
        run(root, "shared", [A], 2, {A: 0.3}, budget=2000)
    elif case == "predictor":
        argv += ["--predictors", "cosine,gates"]
    elif case == "variants":
        run(root, "faster", GAMES, 0, {g: 0.1 for g in GAMES}, learning_rate=0.001)
    elif case == "variant":
        argv += ["--variants", "nope"]
    elif case == "roles":  # asterix alone at another learning rate than its pairs
        shutil.rmtree(root / "shared" / "minatar-asterix")
        for seed in range(3):
            run(root, "shared", [A], seed, {A: ALONE[A][seed]}, learning_rate=0.001)
    elif case == "since":
        argv += ["--since-frames", "5000"]
    elif case == "unfinished":
        shutil.rmtree(root)
        run(root, "shared", [A], 0, {A: 0.1}, budget=2000).joinpath("evals", "frames_000002000", "eval.json").unlink()
    err = error_of(argv, capsys)
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "out").exists()


def test_variants_pick_the_runs(tmp_path, capsys):
    root = study(tmp_path / "s")
    run(root, "per-game", GAMES, 0, {g: 0.1 for g in GAMES}, input_layer="per-game")
    main(["atlas", str(root), "--variants", "shared", "--predictors", "", "--out", str(tmp_path / "out"), *REPS])
    assert "## Each game in the 3-game run (all 3 games) against alone" in capsys.readouterr().out


def test_an_option_an_older_run_lacks_is_not_compared(tmp_path, capsys):
    # runs made before an option existed pool with runs that record it (as `mtdqn study` takes them); W&B
    # options say where a run logged, not what it learned
    root = study(tmp_path / "s")
    newer = root / "shared" / "minatar-asterix" / "seed2" / "config.yaml"
    newer.write_text(yaml.safe_dump({**yaml.safe_load(newer.read_text()), "input_layer": "shared",
                                     "wandb_checkpoints": False, "wandb_project": "elsewhere"}))
    main(["atlas", str(root), "--predictors", "", "--out", str(tmp_path / "out"), *REPS])
    assert f"| {A} | {B} | 3 / 3 |" in capsys.readouterr().out


def test_the_committed_minatar_runs(tmp_path):
    """Copies of the committed runs: each game alone (3 seeds) and all five in one hard-shared agent (3 seeds);
    the pairs are not run yet. The with-all-five numbers are the eval.json values."""
    alone, five = ROOT / "docs/runs/minatar-dqn-100k/dqn", ROOT / "docs/runs/minatar-input-layer/shared/minatar"
    keep = shutil.ignore_patterns("metrics.jsonl", "*.png", "train.log")
    shutil.copytree(alone, tmp_path / "alone" / "dqn", ignore=keep)
    shutil.copytree(five, tmp_path / "five" / "shared" / "minatar", ignore=keep)
    proc = mtdqn("atlas", tmp_path / "alone", tmp_path / "five", "--out", tmp_path / "out", *REPS, cwd=tmp_path)
    for name in ("atlas.md", "atlas.json", "realized.csv", "atlas.png"):
        assert (tmp_path / "out" / name).is_file(), name
    result = json.loads((tmp_path / "out" / "atlas.json").read_text())
    cells = result["groups"]["+".join(f"minatar/{g}" for g in ("asterix", "breakout", "freeway", "seaquest",
                                                               "space_invaders"))]
    assert len(cells) == 5
    for cell in cells:
        game = cell["target"]
        final = [{e["game"]: e["hns"] for e in json.loads(p.read_text())["games"]}[game]
                 for p in sorted(five.glob("seed*/evals/frames_000100000/eval.json"))]
        slug = game.replace("/", "-")
        solo = [json.loads(p.read_text())["games"][0]["hns"]
                for p in sorted(alone.glob(f"{slug}/seed*/evals/frames_000100000/eval.json"))]
        assert cell["with_scores"] == final and cell["alone_scores"] == solo and len(final) == len(solo) == 3
        assert cell["difference"]["value"] == pytest.approx(np.mean(final) - np.mean(solo))
        assert f"| {game} | 3 / 3 | 100,000 | {np.mean(final):.3f} ± {np.std(final, ddof=1):.3f} |" in proc.stdout
    assert "0 of 20 ordered pairs have runs" in proc.stdout
    measured = sorted(five.glob("seed*/conflict.csv"))  # kept with the runs, or not (then a note says so)
    if not measured:
        assert "cosine: no hard-sharing run of all 5 games with conflict.csv (3 such run(s) without it)" in proc.stderr
        return
    games, cosine = read_affinity(str(tmp_path / "out" / "cosine.csv"))
    means = [conflict.read_csv(p) for p in measured]
    assert all(m[0] == games for m in means)  # the runs measured the games in the atlas's (sorted) order
    np.testing.assert_allclose(cosine, np.mean([m[1]["cosine"] for m in means], axis=0), rtol=1e-5)
    assert f"| gradient cosine | {len(measured)} | 0 | - | 0 cell(s) with both values" in proc.stdout


def test_rho_with_one_game_left_out_uses_only_the_cells_without_it():
    """4 games: leaving game g out keeps the 6 cells among the other three. The predictor ranks every cell as the
    realized matrix does except those of game 3, whose cells it reverses: only leaving 3 out gives rho = 1."""
    games = ["a", "b", "c", "d"]
    realized = np.arange(16, dtype=float).reshape(4, 4)
    predictor = realized.copy()
    predictor[3, :] *= -1
    predictor[:, 3] *= -1
    np.fill_diagonal(realized, np.nan)
    without = rho_without_each(predictor, realized, games)
    assert without["d"] == pytest.approx(1.0)
    # without a: cells among b, c, d: realized b>c 6, b>d 7, c>b 9, c>d 11, d>b 13, d>c 14 (ranks 1..6);
    # the predictor 6, -7, 9, -11, -13, -14 ranks them 4, 3, 5, 2, 1, 0 -> Spearman 1 - 6 sum d^2 / (n (n^2 - 1))
    x, y = np.array([4, 3, 5, 2, 1, 0]), np.arange(6)
    assert without["a"] == pytest.approx(1 - 6 * np.sum((x - y) ** 2) / (6 * 35))
    realized[0, 1] = realized[1, 0] = realized[2, 3] = np.nan  # missing cells drop out; fewer than 3 left: None
    realized[0, 2] = realized[2, 0] = np.nan
    assert rho_without_each(predictor, realized, games)["d"] is None
