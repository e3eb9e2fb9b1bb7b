"""Games, suites, protocols and scores: everything that knows about Atari and nothing about learning."""

from mtdqn.envs.games import GameError, check_game, resolve_games, suites
from mtdqn.envs.protocol import FRAMESKIP, PROTOCOLS, Lives, Protocol, make_env, num_actions
from mtdqn.envs.scores import aggregate_hns, hns, reference_scores

__all__ = [
    "FRAMESKIP", "PROTOCOLS", "GameError", "Lives", "Protocol", "aggregate_hns", "check_game", "hns",
    "make_env", "num_actions", "reference_scores", "resolve_games", "suites",
]
