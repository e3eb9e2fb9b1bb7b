"""One vocabulary: scientific notation for numbers, compare's warnings and budgets, the precision
advice as measured, and help and argument errors that answer before torch or ale-py load."""

import subprocess
import sys

import numpy as np
import pytest

from mtdqn.agents.core.evaluation import summarize, write_report
from mtdqn.agents.studies.compare import compare, load
from mtdqn.agents.studies.compare_report import markdown
from mtdqn.agents.training.config import parse_number
from mtdqn.envs import PROTOCOLS
from mtdqn.scripts.bench import faster_precision
from mtdqn.scripts.train import parse
from test_cli import mtdqn, one_line_error, source_env
from test_compare import at_hns, report


@pytest.mark.parametrize("text, integer, value", [
    ("1e5", True, 100_000), ("2.5e3", True, 2500), ("100000", True, 100_000), ("1e-3", True, None),
    ("1.5", True, None), ("abc", True, None), ("inf", True, None), ("1e-3", False, 0.001), ("1e5", False, 1e5),
    ("-5", True, -5),
])
def test_parse_number(text, integer, value):
    assert parse_number(text, integer) == value and type(parse_number(text, integer)) is type(value)


def test_integer_flags_take_scientific_notation():
    args = parse(["--suite", "pong", "--frames-per-game", "1e5", "--learning-starts=2e4", "--learning-rate", "1e-3"])
    assert (args.frames_per_game, args.learning_starts, args.learning_rate) == (100_000, 20_000, 0.001)
    assert type(args.frames_per_game) is int


def test_yaml_files_take_scientific_notation_for_numeric_fields_only(tmp_path):
    (tmp_path / "c.yaml").write_text("suite: pong\nframes_per_game: 1e5\nlearning_rate: 1e-3\nadam_eps: 1.5e-4\n"
                                     "wandb_group: 1e5\n")
    args = parse(["--config", str(tmp_path / "c.yaml")])
    assert (args.frames_per_game, args.learning_rate, args.adam_eps) == (100_000, 0.001, 1.5e-4)
    assert type(args.frames_per_game) is int and args.wandb_group == "1e5"  # a string field keeps its string


def test_a_non_integral_value_for_an_integer_is_still_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("frames_per_game: 1e-3\n")
    one_line_error(mtdqn("train", "--config", "c.yaml", cwd=tmp_path, check=False), "frames_per_game", "'1e-3'", "int")
    one_line_error(mtdqn("train", "--frames-per-game", "2.5", cwd=tmp_path, check=False), "--frames-per-game", "'2.5'")


def test_compare_warns_for_dropped_games_and_different_budgets(tmp_path):
    a = report(tmp_path, "a", {"pong": at_hns("pong", [0.2, 0.2]), "qbert": at_hns("qbert", [0.1, 0.1])}, 400_000)
    b = report(tmp_path, "b", {"pong": at_hns("pong", [0.3, 0.3])}, 100_000)
    result = compare({"a": [load(str(a))], "b": [load(str(b))]})
    assert result["warnings"] == [
        "qbert is not in every run (missing from b): dropped from the comparison",
        "the runs were trained for different frames per game (a 400,000; b 100,000): "
        "their scores are not at one budget"]
    assert result["frames_per_game"] == {"a": "400,000", "b": "100,000"}
    assert "| a | 1 | 400,000 | " in markdown(result) and "| b | 1 | 100,000 | " in markdown(result)
    proc = mtdqn("compare", a, b, "--out", tmp_path / "cmp", cwd=tmp_path)
    assert [l for l in proc.stderr.splitlines() if l.startswith("mtdqn: warning: ")] == [
        f"mtdqn: warning: {w}" for w in result["warnings"]]


def test_compare_does_not_warn_for_the_frames_a_run_overshoots_by(tmp_path):
    a = report(tmp_path, "a", {"pong": at_hns("pong", [0.2, 0.2])}, 75_008)
    b = report(tmp_path, "b", {"pong": at_hns("pong", [0.3, 0.3])}, 75_012)
    assert compare({"a": [load(str(a))], "b": [load(str(b))]})["warnings"] == []


def test_a_run_is_at_the_budget_of_its_least_trained_game(tmp_path):
    """A multi-game MinAtar run stops once every game has its budget, and its games with long episodes pass
    it (a reset step counts no frame): the five-game atlas runs ended with freeway at 106,350 and breakout at
    100,000. Against a one-game run at 100,000 that is one budget, whichever games are compared; per game the
    table keeps what each got."""
    scores = {"minatar/breakout": [3.0, 5.0], "minatar/freeway": [20.0, 24.0]}
    out = tmp_path / "shared/evals/frames_000100000"
    write_report(summarize({g: np.array(s) for g, s in scores.items()}, protocol=PROTOCOLS["minatar"], epsilon=0.0,
                           frames={"minatar/breakout": 100_000, "minatar/freeway": 106_350}), out)
    alone = tmp_path / "alone/evals/frames_000100000"
    write_report(summarize({"minatar/freeway": np.array([30.0, 28.0])}, protocol=PROTOCOLS["minatar"], epsilon=0.0,
                           frames={"minatar/freeway": 100_000}), alone)
    result = compare({"alone": [load(str(tmp_path / "alone"))], "shared": [load(str(tmp_path / "shared"))]})
    assert result["warnings"] == ["minatar/breakout is not in every run (missing from alone): dropped from the comparison"]
    assert result["frames_per_game"] == {"alone": "100,000", "shared": "100,000"}
    assert result["games"][0]["frames"] == {"alone": 100_000, "shared": 106_350}
    half = tmp_path / "half/evals/frames_000050000"
    write_report(summarize({"minatar/freeway": np.array([9.0, 11.0])}, protocol=PROTOCOLS["minatar"], epsilon=0.0,
                           frames={"minatar/freeway": 53_000}), half)
    assert compare({"half": [load(str(tmp_path / "half"))], "shared": [load(str(tmp_path / "shared"))]})[
        "warnings"][1:] == ["the runs were trained for different frames per game (half 53,000; shared 100,000): "
                        "their scores are not at one budget"]


def test_bench_says_which_precision_is_faster_here():
    assert faster_precision({"fp32": {"update_ms": 57.4}, "bf16": {"update_ms": 77.7}}) == (
        "faster precision on this machine: fp32 (57.4 ms per update vs 77.7 ms bf16); train with --precision fp32")
    assert faster_precision({"fp32": {"update_ms": 38.8}, "bf16": {"update_ms": 24.5}}).startswith(
        "faster precision on this machine: bf16 (24.5 ms per update vs 38.8 ms fp32)")


def test_precision_help_states_the_measurements():
    proc = mtdqn("train", "-h", cwd=".")
    text = " ".join(proc.stdout.split())
    for needle in ("24.5 ms vs 38.8 ms fp32", "AVX512-BF16 but no AMX", "77.7 ms", "57.4 ms fp32", "mtdqn bench"):
        assert needle in text


PROBE = """
import sys
from mtdqn.scripts.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = sorted(m for m in ("torch", "ale_py", "mtdqn.envs", "mtdqn.agents.studies.compare") if m in sys.modules)
print("EXIT", code, "HEAVY", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize("args, code", [
    (["train", "-h"], 0), (["compare", "-h"], 0), (["train", "--frames-per-game", "-5"], 2),
    (["train", "--framez", "3"], 2), (["train", "--frames-per-game", "abc"], 2), (["compare"], 2),
    (["train", "--progress-interval", "-1"], 2),
])
def test_help_and_argument_errors_do_not_load_torch_or_ale_py(tmp_path, args, code):
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, capture_output=True, text=True,
                          env=source_env(), timeout=120)
    assert proc.stderr.strip().splitlines()[-1] == f"EXIT {code} HEAVY []", proc.stderr
