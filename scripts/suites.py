"""`mtdqn suites [--all]`: the named suites, and every ROM id ale-py ships."""

from __future__ import annotations

from mtdqn.envs.games import all_games, suites
from mtdqn.envs.scores import reference_scores


def main(argv: list[str]) -> None:
    for name, games in suites().items():
        print(f"{name} ({len(games)} games): {','.join(games)}")
    if "--all" in argv:
        refs = reference_scores()
        print(f"\nall ale-py game ids ({len(all_games())}; * = has a human reference, so an HNS):")
        print(" ".join(g + ("*" if g in refs else "") for g in all_games()))
