"""The ways games share the torso, by name, and the groups format grouped sharing reads.

Every mode is a `torso_of` list (the torso each game reads its features from) plus, for two of them,
something the loss adds:

| --sharing | torso_of          | what else                                                         |
|-----------|-------------------|-------------------------------------------------------------------|
| shared    | [0] * G           | hard sharing: one torso, a head per game (the default)            |
| separate  | range(G)          | no sharing: a network per game                                    |
| grouped   | from --groups     | a torso per group ('a,b;c', or a file written by `mtdqn group`)   |
| soft      | range(G)          | torsos start equal; `soft_penalty` pulls them together            |
| learned   | [0] * G           | one torso gated per game and channel (gates.py), costs in the loss |

A new mode is a row here (its torso_of and what it adds to the loss), a value of TrainConfig.sharing,
and, if it has parameters of its own, a part of MultiHeadQNetwork (core/network.py) as the gates are.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

SHARING = ("shared", "separate", "grouped", "soft", "learned")


def torso_of(sharing: str, games: list[str], groups: str | None = None) -> list[int]:
    """The torso index of each game under a sharing mode."""
    if sharing not in SHARING:
        raise ValueError(f"unknown sharing {sharing!r}: choose one of {', '.join(SHARING)}")
    if sharing in ("shared", "learned"):
        return [0] * len(games)
    if sharing == "grouped":
        return parse_groups(groups, games)
    return list(range(len(games)))  # separate and soft: a torso per game


def soft_penalty(torsos: nn.ModuleList) -> torch.Tensor:
    """Sum over torsos of the squared distance of their weights from the torsos' mean (0 with one torso)."""
    if len(torsos) == 1:
        return next(torsos.parameters()).new_zeros(())
    total = 0.0
    for params in zip(*(t.parameters() for t in torsos)):
        stacked = torch.stack(params)
        total = total + (stacked - stacked.mean(0)).pow(2).sum()
    return total


class GroupsError(ValueError):
    """A groups string, groups file or affinity file that cannot be used; the message says why."""


def groups_string(groups: list[list[str]]) -> str:
    return ";".join(",".join(g) for g in groups)


def parse_groups(spec: str, games: list[str]) -> list[int]:
    """Group index per game from 'a,b;c,d' or a file holding that (comment lines start with #)."""
    text = spec
    names = [g.strip() for g in re.split(r"[,;]", spec) if g.strip()]
    if Path(spec).is_dir() and not set(names) & set(games):
        found = sorted(Path(spec).glob("groups-*.txt"))
        hint = f"a file such as {found[0]}" if found else "a file from `mtdqn group`"
        raise GroupsError(f"--groups {spec!r} is a folder: give {hint}, or groups such as "
                          "'pong,breakout;qbert,frostbite'")
    if not Path(spec).is_file() and not set(names) & set(games) and (  # a path, not groups (MinAtar ids have a /)
            "/" in spec or spec.endswith((".txt", ".yaml", ".yml", ".csv"))):
        raise GroupsError(f"--groups file {spec!r} does not exist (give a file from `mtdqn group`, or groups "
                          "such as 'pong,breakout;qbert,frostbite')")
    if Path(spec).is_file():
        lines = [line.strip() for line in Path(spec).read_text().splitlines()]
        text = ";".join(line for line in lines if line and not line.startswith("#"))
    groups = [[g.strip() for g in part.split(",") if g.strip()] for part in text.split(";") if part.strip()]
    seen: dict[str, int] = {}
    for k, group in enumerate(groups):
        for g in group:
            if g not in games:
                raise GroupsError(f"--groups names {g!r}, which is not in the suite ({','.join(games)})")
            if g in seen:
                raise GroupsError(f"--groups puts {g!r} in two groups; each game belongs to exactly one")
            seen[g] = k
    missing = [g for g in games if g not in seen]
    if missing:
        raise GroupsError(f"--groups leaves out {','.join(missing)}: every game of the suite needs a group "
                          f"(e.g. {groups_string(groups + [missing])})")
    return [seen[g] for g in games]
