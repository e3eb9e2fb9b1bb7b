"""`mtdqn suites [--all]`: the named suites, and every ROM id ale-py ships.

Its options go through parse_options like every command's, so a typo (`--al`) is an error that names the
valid flag, not a silent listing without the ids asked for."""

from __future__ import annotations

from dataclasses import dataclass

from mtdqn.envs.games import all_games, suites
from mtdqn.envs.scores import reference_scores
from mtdqn.scripts.cli import parse_options


@dataclass
class SuitesArgs:
    all: bool = False
    """Also list every game id ale-py ships (* marks those with a human reference, so an HNS)."""


def main(argv: list[str]) -> None:
    args = parse_options(SuitesArgs, argv, "mtdqn suites", "List the named suites and, with --all, every game id.")
    for name, games in suites().items():
        print(f"{name} ({len(games)} game{'s' * (len(games) != 1)}): {','.join(games)}")
    if args.all:
        refs = reference_scores()
        print(f"\nall ale-py game ids ({len(all_games())}; * = has a human reference, so an HNS):")
        print(" ".join(g + ("*" if g in refs else "") for g in all_games()))
