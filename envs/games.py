"""Game ids and named suites.

A game is an ale-py ROM id (`ms_pacman`, `battle_zone`) or a MinAtar id (`minatar/breakout`, envs/minatar.py);
a suite is a named list of them or a comma-separated list, of one family. Every name is checked here,
before any emulator or network is built.
"""

from __future__ import annotations

import difflib
from functools import lru_cache

from ale_py import roms

from mtdqn.envs import minatar


class GameError(ValueError):
    """A bad game or suite name; the message names the value and what would be valid."""


# Aitchison et al. 2022: small subsets whose scores predict the Atari-57 median.
ATARI5 = ("battle_zone", "double_dunk", "name_this_game", "phoenix", "qbert")
ATARI10 = ATARI5 + ("amidar", "bowling", "frostbite", "kung_fu_master", "riverraid")
# The Atari-100k benchmark (Kaiser et al. 2020).
ATARI26 = (
    "alien", "amidar", "assault", "asterix", "bank_heist", "battle_zone", "boxing", "breakout",
    "chopper_command", "crazy_climber", "demon_attack", "freeway", "frostbite", "gopher", "hero",
    "jamesbond", "kangaroo", "krull", "kung_fu_master", "ms_pacman", "pong", "private_eye", "qbert",
    "road_runner", "seaquest", "up_n_down",
)


@lru_cache(maxsize=1)
def all_games() -> tuple[str, ...]:
    """Every ROM id shipped inside the installed ale-py wheel."""
    return tuple(sorted(roms.get_all_rom_ids()))


def _atari57() -> tuple[str, ...]:
    from mtdqn.envs.scores import reference_scores

    return tuple(reference_scores())


def suites() -> dict[str, tuple[str, ...]]:
    """Named suites, in the order `mtdqn suites` prints them."""
    return {"atari5": ATARI5, "atari10": ATARI10, "atari26": ATARI26, "atari57": _atari57(), **minatar.SUITES}


def check_game(game: str) -> str:
    """Return `game` if ale-py (or MinAtar, for `minatar/...`) knows it, else raise naming the closest valid ids."""
    if minatar.is_minatar(game):
        return minatar.check_game(game)
    if game in all_games():
        return game
    close = difflib.get_close_matches(game.lower().replace("-", "_"), all_games(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "`mtdqn suites --all` lists the valid ids"
    raise GameError(f"unknown game {game!r}: {hint}")


def resolve_games(spec: str) -> list[str]:
    """A suite name (`atari5`) or comma-separated ROM ids (`pong,breakout`) -> list of ids."""
    named = suites()
    if spec in named:
        return list(named[spec])
    games = [g.strip() for g in spec.split(",")]
    if not spec.strip() or any(not g for g in games):
        raise GameError(f"empty game in {spec!r}: give a suite ({', '.join(named)}) or ids like pong,breakout")
    duplicated = sorted({g for g in games if games.count(g) > 1})
    if duplicated:
        raise GameError(f"game listed twice in {spec!r}: {', '.join(duplicated)}")
    if len(games) == 1 and games[0] not in all_games():
        close = difflib.get_close_matches(spec, list(named), n=3, cutoff=0.7)
        if close:
            raise GameError(f"unknown suite or game {spec!r}: did you mean {' or '.join(close)}?")
    games = [check_game(g) for g in games]
    families = {minatar.is_minatar(g) for g in games}
    if len(families) > 1:
        raise GameError(f"{spec!r} mixes MinAtar and ALE games: one run trains one family "
                        f"(their observations and networks differ)")
    return games
