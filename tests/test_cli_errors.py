"""Issue 29's argument errors: every command refuses an unknown flag in one line that names the closest valid
one, `suites` too; --config given a folder says so; counts read "1 game", not "1 games"."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from test_cli import mtdqn

ROOT = Path(__file__).resolve().parent.parent


def error(proc) -> str:
    """The one stderr line of a refused command (exit code 2), without its prefix."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("mtdqn: error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0][len("mtdqn: error: "):]


@pytest.mark.parametrize("args, message", [
    (["suites", "--al"], "unknown option --al: did you mean --all? (see mtdqn suites -h)"),
    (["suites", "--bogus"], "unknown option --bogus: the options are --all, --no-all, --help (see mtdqn suites -h)"),
    (["train", "--frames-per-gmae", "10"],
     "unknown option --frames-per-gmae: did you mean --frames-per-game? (see mtdqn train -h)"),
    (["train", "--frames-per-gmae=10"],
     "unknown option --frames-per-gmae: did you mean --frames-per-game? (see mtdqn train -h)"),
    # tyro reports the required --affinity as missing; the typo is the cause, and is what is named
    (["group", "--affinty", "a.csv"], "unknown option --affinty: did you mean --affinity? (see mtdqn group -h)"),
    (["compare", "r", "--lables", "a", "--outt", "x"],
     "unknown options --lables: did you mean --labels?; --outt: did you mean --out? (see mtdqn compare -h)"),
    (["published", "r", "--agnet", "spr"], "unknown option --agnet: did you mean --agent? (see mtdqn published -h)"),
    (["baseline", "--game", "pong", "--target-update", "5"],
     "unknown option --target-update: did you mean --target-update-period? (see mtdqn baseline -h)"),
    (["train", "--zzzzzz"], "unknown option --zzzzzz (see mtdqn train -h)"),
])
def test_an_unknown_option_is_one_line_with_the_closest_valid_one(tmp_path, args, message):
    assert error(mtdqn(*args, cwd=tmp_path, check=False)) == message
    assert list(tmp_path.iterdir()) == []


def test_suites_takes_all_and_nothing_else(tmp_path):
    plain = mtdqn("suites", cwd=tmp_path).stdout.splitlines()
    full = mtdqn("suites", "--all", cwd=tmp_path).stdout.splitlines()
    assert plain[0].startswith("atari5 (5 games): battle_zone,") and full[:len(plain)] == plain
    assert full[len(plain) + 1].startswith("all ale-py game ids (") and "pong*" in full[-1].split()


def test_a_positional_field_is_no_option_and_a_bool_has_its_no_form():
    from mtdqn.scripts.cli import option_names, unknown_options
    from mtdqn.scripts.published import PublishedArgs
    from mtdqn.scripts.suites import SuitesArgs

    assert option_names(PublishedArgs) == ["--agent", "--out", "--help"]  # runs is positional
    assert option_names(SuitesArgs) == ["--all", "--no-all", "--help"]
    assert unknown_options(SuitesArgs, ["--all", "--no-all", "--", "-h"]) is None


def test_config_given_a_folder_says_it_is_a_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert error(mtdqn("train", "--config", "empty", cwd=tmp_path, check=False)) == (
        "config file 'empty' is a folder: --config takes a YAML file of option: value; e.g. a run's config.yaml")
    # a run folder: its config.yaml (every option, preset and config recorded as null) is pointed at, and loads
    from mtdqn.agents.training.config import TrainConfig, from_yaml

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(TrainConfig(suite="pong", seed=3).to_dict()))
    assert error(mtdqn("train", "--config", "run", cwd=tmp_path, check=False)) == (
        "config file 'run' is a folder: --config takes a YAML file of option: value; give --config "
        "run/config.yaml for the options of the run in it")
    options = from_yaml(str(tmp_path / "run" / "config.yaml"))
    assert (options["suite"], options["seed"]) == ("pong", 3) and "preset" not in options
    assert error(mtdqn("train", "--config", "none.yaml", cwd=tmp_path, check=False)) == (
        "config file 'none.yaml' does not exist")


@pytest.mark.parametrize("game, message", [
    ("pong,breakout", "--game 'pong,breakout' lists 2 games: mtdqn baseline trains one game per run; give one, "
                      "e.g. --game pong (a run per game; mtdqn compare joins them with +)"),
    ("atari5", "--game 'atari5' is a suite of 5 games: mtdqn baseline trains one game per run; give one, "
               "e.g. --game battle_zone (a run per game; mtdqn compare joins them with +)"),
    ("pongg", "unknown game 'pongg': did you mean pong?"),
    ("minatar/breakout", "--game 'minatar/breakout' is a MinAtar game: mtdqn baseline trains SB3's DQN on ALE games "
                         "only; for MinAtar, mtdqn train --suite minatar/breakout --preset minatar-dqn is the DQN "
                         "baseline"),
])
def test_baseline_takes_one_game(tmp_path, game, message):
    assert error(mtdqn("baseline", "--game", game, "--out", tmp_path / "x", cwd=tmp_path, check=False)) == message
    assert not (tmp_path / "x").exists()


# f-strings whose number before " games" / " runs" is no count, or lies in a file another change owns
# this round (issue 29: fix it there, then drop it here)
NOT_COUNTS = {
    ("scripts/evaluate.py", "PROTOCOLS[args.protocol].family"), ("scripts/evaluate.py", "protocol.family"),
    ("agents/training/validate.py", "names[PROTOCOLS[cfg.protocol].family]"),
    ("agents/bench/benchmark.py", "', '.join(map(str, sizes.scale_games))"),  # a list: "1, 2, 4 games"
    ("envs/statistics.py", "runs"),  # only reached with 2 runs or more
}
ELSEWHERE: set = set()


def bare_counts(path: Path) -> list[str]:
    """'{len(games)} games' in an f-string: "1 games" when the count is one."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.JoinedStr):
            for value, text in zip(node.values, node.values[1:]):
                if (isinstance(value, ast.FormattedValue) and isinstance(text, ast.Constant)
                        and re.match(r" (games|runs)\b", str(text.value))
                        and not re.fullmatch(r"[A-Z_]+", ast.unparse(value.value))):  # a constant: never 1
                    found.append((str(path.relative_to(ROOT)), ast.unparse(value.value)))
    return found


def test_counts_of_games_and_runs_agree_with_their_number():
    found = {f for root in ("scripts", "agents", "envs") for p in sorted((ROOT / root).rglob("*.py"))
             for f in bare_counts(p)}
    assert found - NOT_COUNTS - ELSEWHERE == set()


def test_one_game_and_one_run_read_in_the_singular(tmp_path):
    import numpy as np

    from mtdqn.agents.core.network import MultiHeadQNetwork
    from mtdqn.agents.multitask.grouping import best_partition
    from mtdqn.agents.studies.compare_report import runs_of

    labels = {"labels": {"a": {"runs": 1}, "b": {"runs": 3}}}
    assert (runs_of(labels, "a"), runs_of(labels, "b")) == ("1 run", "3 runs")
    assert best_partition(np.zeros((1, 1)), 2)[2] == "exact search over every partition of 1 game into <= 2 groups"
    with pytest.raises(ValueError, match=r"^torso_of \[1\] must give each of 1 game a torso index"):
        MultiHeadQNetwork([4], torso_of=[1])
    assert error(mtdqn("compare", "a", "b", "--labels", "x", cwd=tmp_path, check=False)) == "--labels has 1 name for 2 runs"


def test_the_flags_suggested_are_the_ones_tyro_accepts_for_every_command():
    """option_names reads the dataclass; tyro builds the parser: a field kind that tyro turns into other flags
    (a nested dataclass: --a.b) would make the suggestions wrong, so both are compared command by command."""
    import dataclasses
    import importlib
    import warnings

    import tyro

    from mtdqn.scripts.cli import COMMANDS, option_names

    checked = []
    for command in COMMANDS:
        module = importlib.import_module(f"mtdqn.scripts.{command}")
        for name, cls in vars(module).items():
            if name.endswith("Args") and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    parser = tyro.extras.get_parser(cls)
                flags = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
                assert set(option_names(cls)) == flags, command
                checked.append(command)
    assert checked == list(COMMANDS)  # every command parses with parse_options, suites included
