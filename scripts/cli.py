"""`mtdqn` entry point: dispatch to a subcommand; bad input ends in one line and exit code 2."""

from __future__ import annotations

import sys

COMMANDS = {
    "train": "Train one agent across a suite of games.",
    "evaluate": "Evaluate a checkpoint: per-game scores, HNS and aggregates.",
    "suites": "List the named suites (and, with --all, every game id).",
    "bench": "Measure acting, training and scaling throughput and replay memory against references.",
    "affinity": "Average a run's gradient-conflict and inter-task-affinity measurements.",
    "group": "Choose which games to train together from an affinity matrix.",
    "sharing": "Show what a --sharing learned run shares: channels per game, overlaps, groups.",
    "compare": "Put runs' per-game HNS side by side: ratios, aggregates, negative transfer.",
    "study": "Run a grid of training runs (variants x seeds) from a study file, resumably, and report over them.",
    "atlas": "Which games help each other: pairs and all games against alone, and what predicts it.",
    "published": "Put Atari-100k scores beside a published agent's 100 runs per game (DrQ(eps), SPR).",
    "baseline": "Train SB3's single-task DQN on one game under the same protocol, for comparison.",
}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def fail(message: str) -> None:
    print(f"mtdqn: error: {message}", file=sys.stderr)
    sys.exit(2)


def exit_interrupted(message: str) -> None:
    """Ctrl-C handled: one line, exit code 130. os._exit, because a KeyboardInterrupt that passed through
    an extension's PyRun_* call (torch's import does this) makes Python kill itself with SIGINT at exit
    even after the interrupt was caught."""
    import os

    print(f"mtdqn: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def parse_options(cls, argv: list[str], prog: str, description: str, default=None):
    """tyro.cli, with its boxed multi-line errors folded into one line (exit code 2)."""
    import contextlib
    import io
    import re

    import tyro

    argv = integral_numbers(cls, argv)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            kwargs = {} if default is None else {"default": default}
            return tyro.cli(cls, args=argv, prog=prog, description=description, **kwargs)
    except SystemExit as e:
        if not e.code:
            raise
        unknown = unknown_options(cls, argv)
        if unknown:  # the root cause, also when tyro reports its consequence (a required option missing)
            fail(f"{unknown} (see {prog} -h)")
        text = re.sub(r"[\u2500-\u257f]", " ", captured.getvalue())
        head = text.split("For full helptext")[0]
        head = re.split(r"\n[ \t]*\n", head)[0]  # the message, not the help text after the rule
        lines = [" ".join(line.split()) for line in head.splitlines() if line.strip()]
        words = " ".join(lines[1:] if len(lines) > 1 else lines)  # drop the box title
        number = re.fullmatch(r"Error parsing (--\S+): (invalid literal for int\(\)|could not convert string to float)"
                              r".*?: ('.*')", words)  # Python's words for a value that is no number
        if number:
            words = f"{number[1]} {number[3]} is not {'an integer' if 'int' in number[2] else 'a number'}"
        fail(f"{words or 'bad arguments'} (see {prog} -h)")


def option_names(cls) -> list[str]:
    """The --flags tyro makes of a dataclass's fields (a bool also --no-FLAG; a positional field none)."""
    import dataclasses
    import typing

    import tyro

    positional = typing.get_args(tyro.conf.Positional[int])[1]
    hints = typing.get_type_hints(cls, include_extras=True)
    names = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if positional in typing.get_args(hint)[1:]:
            continue
        flag = f"--{field.name.replace('_', '-')}"
        names += [flag, f"--no-{flag[2:]}"] if hint is bool else [flag]
    return names + ["--help"]


def unknown_options(cls, argv: list[str]) -> str | None:
    """'unknown option --frames-per-gmae: did you mean --frames-per-game?' for the flags in argv that cls
    has not, each with its closest valid flag (difflib), or the valid ones when they are few; None if all
    are known. tyro's own suggestions sit in its multi-line box, which parse_options folds away."""
    import difflib

    names = option_names(cls)
    given = [a.split("=", 1)[0] for a in argv if a.startswith("--") and a != "--"]
    unknown = list(dict.fromkeys(f for f in given if f not in names))
    if not unknown:
        return None
    parts = []
    for flag in unknown:
        close = difflib.get_close_matches(flag, names, n=1, cutoff=0.6)
        if close:
            parts.append(f"{flag}: did you mean {close[0]}?")
        elif len(names) <= 8:
            parts.append(f"{flag}: the options are {', '.join(names)}")
        else:
            parts.append(flag)
    return f"unknown option{'s' * (len(unknown) > 1)} " + "; ".join(parts)


def integral_numbers(cls, argv: list[str]) -> list[str]:
    """`--frames-per-game 1e5` as 100000: integer options take integral scientific notation too
    (tyro's int() would refuse it); anything else is left for the parser to judge."""
    import typing

    from mtdqn.agents.training.config import number_kind, parse_number

    flags = {f"--{name.replace('_', '-')}" for name, hint in typing.get_type_hints(cls).items()
             if number_kind(hint) == "int"}
    out = list(argv)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if flag not in flags:
            continue
        j = i if eq else i + 1
        text = value if eq else (out[j] if j < len(out) else None)
        number = None if text is None else parse_number(text, integer=True)
        if number is not None:
            out[j] = f"{flag}={number}" if eq else str(number)
    return out


def usage() -> str:
    lines = ["usage: mtdqn <command> [options]   (mtdqn <command> -h for its options)", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


_interrupted = False


def _on_sigint(signum, frame) -> None:
    """Ctrl-C before a command takes over signals: remembered, then raised as usual. A library whose
    import is cut by it may swallow the KeyboardInterrupt and fail later in some other way
    (numpy half imported); the flag lets that failure end as the interrupt it is."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def was_interrupted() -> bool:
    return _interrupted


class _HoldSigintWhileTorchLoads:
    """A finder on sys.meta_path for the first `import torch`, wherever it happens: torch's module runs with
    SIGINT blocked, and a Ctrl-C that came meanwhile is delivered as the mask is restored, once torch's module
    has run, ending as any early Ctrl-C does (one line, exit 130). Raised inside torch's C++ module initialization, a
    KeyboardInterrupt cannot unwind: the process aborted with "terminate called after throwing an instance of
    'pybind11::error_already_set'" (CI met it with SIGINT 0.5 s after a start). A finder, not an import up
    front, so that help and argument errors still answer without loading torch."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate torch
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _HeldLoader(spec.loader)
        return spec


class _HeldLoader:
    """The loader found for torch, its module run with SIGINT blocked; anything else asked of it, it answers."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        import signal

        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.loader.exec_module(module)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def hold_sigint_while_torch_loads() -> None:
    import signal

    if ("torch" not in sys.modules and hasattr(signal, "pthread_sigmask")  # Windows has no signal masks
            and not any(isinstance(f, _HoldSigintWhileTorchLoads) for f in sys.meta_path)):
        sys.meta_path.insert(0, _HoldSigintWhileTorchLoads())


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except BrokenPipeError:  # a reader that stopped early (`mtdqn games | head`): no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own exit flush would fail too
        sys.exit(1)


def _main(argv: list[str] | None) -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        hold_sigint_while_torch_loads()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        fail(f"unknown command {command!r}: choose one of {', '.join(COMMANDS)}")
    try:
        import importlib

        importlib.import_module(f"mtdqn.scripts.{command}").main(rest)
    except KeyboardInterrupt:  # before a command's own handling (e.g. while torch loads): nothing was written
        exit_interrupted("interrupted")
    except Exception as e:
        if _interrupted:
            exit_interrupted("interrupted")
        if isinstance(e, _user_errors()):
            fail(str(e))
        raise


# raised for bad input by modules that may not be loaded: importing one only to catch its error
# would load torch or ale-py before the arguments are even parsed
USER_ERRORS = (("mtdqn.envs.games", "GameError"), ("mtdqn.agents.core.checkpoint", "CheckpointError"),
               ("mtdqn.agents.multitask.sharing", "GroupsError"))


def _user_errors() -> tuple[type, ...]:
    loaded = [getattr(sys.modules[m], name) for m, name in USER_ERRORS if m in sys.modules]
    return (UsageError, *loaded)
