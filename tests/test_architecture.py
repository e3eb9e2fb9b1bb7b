"""The layout holds: each room of agents/ imports only what docs/architecture.md allows, no module is
over 400 lines, and checkpoints written before the move (commit c49cbe1) still load, act, evaluate and
resume.

The import rules are read from the source with `ast` (imports inside functions included), so a lazy
import cannot slip past them.
"""

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch

from mtdqn.agents.core import checkpoint
from mtdqn.agents.core.network import MultiHeadQNetwork
from test_cli import mtdqn

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("agents", "envs", "scripts")

# Mechanisms of the toolkit that the core is built from; they import nothing of the agent.
MECHANISMS = {"multitask.sharing", "multitask.gates", "multitask.balance"}
# What each room may import of ours: "envs", a room of agents/ ("core"), or one module ("multitask.gates").
ALLOWED = {
    "core": {"envs", "core", *MECHANISMS},
    "multitask": {"envs", "core", "multitask"},
    "training": {"envs", "core", "multitask", "training"},
    "distributed": {"envs", "core", "multitask", "training", "distributed"},
    "bench": {"envs", "core", "multitask", "training", "distributed", "bench"},
    "studies": {"envs", "core", "multitask", "training", "studies"},
    "agents": set(),  # agents/__init__.py: a docstring
    "envs": {"envs"},
    "scripts": {"envs", "scripts", "core", "multitask", "training", "distributed", "bench", "studies"},
}
# Third-party packages only some rooms may import (the core knows nothing of Ray, SB3 or the CLI's parser).
RESTRICTED = {"ray": {"distributed", "bench", "scripts"}, "stable_baselines3": {"bench", "envs", "scripts"},
              "tyro": {"scripts"}}


def room_of(path: Path) -> str:
    """'core' for agents/core/learner.py, 'envs' for envs/games.py, 'scripts' for scripts/train.py."""
    parts = path.relative_to(ROOT).parts
    return parts[1] if parts[0] == "agents" and len(parts) > 2 else parts[0]


def imported(source: str) -> list[str]:
    """Every module a source imports, at any depth (`from a import b` gives a.b as well as a, so an
    import of a module through its package is seen)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def violations(path: Path, source: str) -> list[str]:
    room = room_of(path)
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts[1:])
    allowed = set() if f"{room}.{module.split('.')[-1]}" in MECHANISMS else ALLOWED[room]
    found = []
    for name in imported(source):
        top = name.split(".")[0]
        if top in RESTRICTED and room not in RESTRICTED[top]:
            found.append(f"{path.relative_to(ROOT)} imports {name}")
        if not name.startswith("mtdqn."):
            continue
        ours = name.split(".")[1:]
        target = ours[0] if ours[0] != "agents" else ".".join(ours[1:3])
        if ours[0] == "agents" and len(ours) == 1:
            continue  # the package itself (its docstring)
        if target not in allowed and target.split(".")[0] not in allowed:
            # a room is allowed whole ("core") or by module ("multitask.gates"); a package-only import
            # (`from mtdqn.agents.multitask import x`) is judged by its modules, listed as names too
            if ours[0] == "agents" and len(ours) == 2 and any(
                    n.startswith(name + ".") for n in imported(source)):
                continue
            found.append(f"{path.relative_to(ROOT)} ({room}) imports {name}")
    return found


def python_files():
    return sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py"))


def test_every_room_imports_only_what_it_may():
    assert len(python_files()) > 40
    found = [v for p in python_files() for v in violations(p, p.read_text())]
    assert found == []


def test_the_rule_reader_catches_a_breach_at_any_depth():
    core = ROOT / "agents" / "core" / "learner.py"
    lazy = "def f():\n    import ray\n    from mtdqn.agents.multitask import conflict\n"
    assert violations(core, lazy) == ["agents/core/learner.py imports ray",
                                      "agents/core/learner.py (core) imports mtdqn.agents.multitask.conflict"]
    assert violations(core, "from mtdqn.scripts.cli import main\n") == [
        "agents/core/learner.py (core) imports mtdqn.scripts.cli", "agents/core/learner.py (core) imports "
        "mtdqn.scripts.cli.main"]
    assert violations(core, "from mtdqn.agents.multitask.gates import hard_gate\n") == []
    gates = ROOT / "agents" / "multitask" / "gates.py"  # a mechanism imports nothing of the agent
    assert violations(gates, "from mtdqn.agents.core.torso import LAYERS\n") == [
        "agents/multitask/gates.py (multitask) imports mtdqn.agents.core.torso",
        "agents/multitask/gates.py (multitask) imports mtdqn.agents.core.torso.LAYERS"]
    envs = ROOT / "envs" / "games.py"
    assert violations(envs, "from mtdqn.agents.core import checkpoint\n") != []


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in python_files() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


# -- checkpoints written by the code before the move -----------------------------------------------------
PRE = Path(__file__).parent / "data" / "pre_layout"


@pytest.mark.parametrize("name", ["learned", "soft"])
def test_a_checkpoint_from_before_the_move_gives_the_same_q_values(name):
    """learned: gated torso, PopArt, dueling, SAME padding, Xavier init; soft: two tied torsos. The
    expected Q-values were computed by the code of c49cbe1 on the same generated frames."""
    state = checkpoint.load(PRE / name / "checkpoints" / "frames_000001200.pt")
    net = MultiHeadQNetwork(**state["network"])
    net.load_state_dict(state["learner"]["online"])  # strict: every key where it was
    net.eval()
    obs = torch.randint(0, 256, (4, 4, 84, 84), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        q = net(obs, torch.tensor([0, 1, 0, 1]))
    expected = torch.tensor([[float("-inf") if v is None else v for v in row]
                             for row in json.loads((PRE / "expected_q.json").read_text())[name]["q"]])
    torch.testing.assert_close(q, expected, atol=1e-5, rtol=0)


def test_a_run_from_before_the_move_evaluates_and_resumes(tmp_path):
    run = tmp_path / "learned"
    shutil.copytree(PRE / "learned", run)
    out = mtdqn("evaluate", run, "--episodes", "1", "--max-episode-frames", "200", cwd=tmp_path)
    assert "| pong | 1,200 | 1 |" in out.stdout and "| breakout | 1,200 | 1 |" in out.stdout
    mtdqn("train", "--resume", run, "--frames-per-game", "1600", cwd=tmp_path)
    resumed = checkpoint.load(run / "checkpoints" / "frames_000001600.pt")
    assert resumed["network"] == checkpoint.load(PRE / "learned" / "checkpoints" / "frames_000001200.pt")["network"]
    assert min(resumed["frames"]) >= 1600
