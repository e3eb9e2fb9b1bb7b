"""Every `mtdqn` command shown in the README and in docs/ parses as written (options, values, presets),
the cheap ones run, and the README stays a front door of a few screens."""

import re
import shlex
from pathlib import Path

import pytest

from mtdqn.scripts.cli import COMMANDS, main, parse_options

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shown_commands() -> list[tuple[str, list[str]]]:
    """(page, argv) of every `mtdqn ...` in a bash block: `&&` and `;` chains split, comments dropped, and a
    `for g in a b; do ... $g ...; done` loop taken with its first value."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():  # continuation lines joined
                loop = re.match(r"for (\w+) in (\S+).*?; do (.*); done", line)
                if loop:
                    line = loop.group(3).replace("$" + loop.group(1), loop.group(2))
                for part in re.split(r"&&|;", line):
                    words = shlex.split(part, comments=True)
                    if words[:1] == ["mtdqn"]:
                        found.append((page.name, words[1:]))
    return found


def args_class(command: str):
    import importlib

    module = importlib.import_module(f"mtdqn.scripts.{command}")
    return next(getattr(module, n) for n in dir(module) if n.endswith("Args") and n != "BenchOptions"
                and getattr(getattr(module, n), "__module__", "") == module.__name__)


COMMANDS_SHOWN = shown_commands()


def test_the_pages_show_commands_of_every_kind():
    assert len(COMMANDS_SHOWN) >= 25
    assert {argv[0] for _, argv in COMMANDS_SHOWN} >= {"train", "evaluate", "compare", "affinity", "group",
                                                        "baseline", "bench", "sharing"}


@pytest.mark.parametrize("page, argv", COMMANDS_SHOWN, ids=[f"{p}:{' '.join(a)[:60]}" for p, a in COMMANDS_SHOWN])
def test_every_shown_command_parses_as_written(page, argv):
    command, rest = argv[0], argv[1:]
    assert command in COMMANDS, f"{page}: unknown command {command!r}"
    if command == "train":
        from mtdqn.agents.training.validate import validate
        from mtdqn.scripts.train import parse

        if "--groups" in rest:  # a groups file that an earlier shown command writes: one group of the suite
            at = rest.index("--groups") + 1
            rest = rest[:at] + [rest[rest.index("--suite") + 1]] + rest[at + 1:]
        args = parse(rest)
        if not args.resume:
            validate(args)
    elif command != "suites":
        parse_options(args_class(command), rest, f"mtdqn {command}", "")


def test_the_cheap_commands_run(capsys):
    main(["suites"])
    assert "atari26" in capsys.readouterr().out


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 220
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert "pip install" in blocks[0] and "mtdqn train" in blocks[0] and "mtdqn evaluate" in blocks[0]
    assert "pytest" in blocks[1]
    for link in re.findall(r"\]\((docs/[^)#]+)\)", text):  # every linked page and figure exists
        assert (ROOT / link).is_file(), link
