"""Training configuration: one typed dataclass, one docstring per field (shown by `mtdqn train -h`).

Budgets and intervals count emulator frames per game (4 per agent step), the unit of the Atari
literature; learner periods count gradient updates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal


@dataclass
class TrainConfig:
    suite: str = "atari5"
    """Suite name (atari5, atari10, atari26, atari57) or comma-separated game ids (pong,breakout)."""
    frames_per_game: int = 250_000
    """Emulator frames to train on, per game (4 per agent step)."""
    seed: int = 0
    """Seed for torch, numpy and the emulators."""
    protocol: Literal["machado", "classic", "atari100k", "minatar", "minatar_full"] | None = None
    """machado: sticky actions 0.25, no no-ops; classic: no sticky actions, up to 30 no-op starts;
    atari100k: no sticky actions, up to 30 no-op starts, a lost life is terminal for the learner (not for
    evaluation), as Dopamine's atari_100k runs; minatar: MinAtar's sticky actions 0.1 and difficulty ramping,
    minimal action sets (minatar_full: all 6 actions, as the MinAtar paper). Default: machado for ALE games,
    minatar for MinAtar games (config.yaml records the one used)."""
    max_episode_frames: int = 108_000
    """Episode cap in emulator frames (every protocol uses 108,000: 27,000 agent steps, 30 minutes of play;
    on MinAtar a frame is a step)."""
    envs_per_game: int = 4
    """Parallel emulators per game."""
    env_threads: int = 0
    """C++ threads per game's vector env; 0: the CPU count shared across games, at most envs_per_game."""
    threads: int = 1
    """Torch intra-op threads. 1 is the safe choice on 2 cores (the env threads need the other)."""
    device: str = "cpu"
    """Torch device for the network: cpu, cuda or cuda:N."""

    replay_size: int = 100_000
    """Transitions kept per game (about 7 KB each: frames are stored once)."""
    replay_balance: Literal["equal", "proportional"] = "equal"
    """equal: every ready game gets the same share of each batch; proportional: by stored transitions."""
    batch_size: int = 32
    """Transitions per game in each gradient update: a G-game update samples G x batch_size, so every
    game sees what a one-game agent with this batch sees."""
    learning_rate: float = 1e-4
    """Adam learning rate."""
    adam_eps: float = 1.5e-4
    """Adam epsilon."""
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 3
    """Steps in the multi-step return."""
    train_frequency: float = 4
    """Agent steps of each game per gradient update (1: an update per agent step, as DER and DrQ do;
    below 1, several: 0.5 is SPR's 2 updates per step, 0.125 SR-SPR's 8). Each game's stored transition
    is then sampled batch_size / train_frequency times, whatever the number of games."""
    target_update_period: int = 2_000
    """Gradient updates between target-network syncs. --target-tau > 0 replaces the syncs (a preset's or config
    file's period is then unused; both flags on one command line are refused)."""
    target_tau: float = 0.0
    """Polyak averaging of the target network after every update, theta' <- (1 - tau) theta' + tau theta,
    instead of periodic syncs (a soft update replaces the hard one, never modifies it); 0: periodic syncs every
    --target-update-period updates."""
    learning_starts: int = 20_000
    """Frames per game collected (with epsilon_start) before learning and epsilon's decay start."""
    max_grad_norm: float = 10.0
    """Gradient-norm clipping threshold (0: no clipping, as Dopamine's agents)."""
    life_loss_terminal: bool = False
    """Treat a lost life as terminal in the TD target (no bootstrap past it) while the game goes on, as
    DER, SPR and BBF train (Dopamine's terminal_on_life_loss). Training only: evaluation and episode
    returns are unchanged; the recorded protocol says life_loss_terminal: true."""
    life_loss_reset: bool = False
    """Restart the frame stack at a lost life (older frames zeroed, as at an episode start) when acting,
    learning and evaluating, as Dopamine's runner does with terminal_on_life_loss (it begins a new agent
    episode there). Needs life-loss terminals (--protocol atari100k or --life-loss-terminal); recorded
    in the protocol as life_loss_reset: true."""
    reward_clip: bool = True
    """Clip rewards to [-1, 1] in the learner (the env always returns raw game rewards)."""
    dueling: bool = False
    """Dueling heads: per-game value and advantage streams."""
    norm: Literal["none", "layer"] = "none"
    """Normalization layers in the torso. layer: GroupNorm(1 group) after each convolution and
    LayerNorm after the dense layer, before their ReLUs."""
    input_layer: Literal["shared", "per-game"] | None = None
    """MinAtar: how games with 4 to 10 channels enter one torso. shared: every observation zero-padded to
    10 channels into the same convolution; per-game: each game's own 1x1 convolution first (identity at
    start). Default: per-game for two or more MinAtar games (it learned better in docs/minatar.md's study,
    3 runs each), shared for one game (the MinAtar paper's network) and for ALE games, which have one input
    format (config.yaml records the one used)."""
    padding: Literal["valid", "same"] = "valid"
    """Convolution padding of the torso. valid: the Nature network's (dense layer reads 3,136 features);
    same: TensorFlow's SAME padding, as Dopamine's JAX agents (DER, DrQ, SPR) have it (7,744 features)."""
    init: Literal["torch", "xavier"] = "torch"
    """Weight initialization. torch: PyTorch's defaults; xavier: Xavier-uniform weights and zero biases,
    as Dopamine's JAX agents."""
    intensity_noise: float = 0.0
    """Image augmentation (DrQ's intensity): each sampled stack, and independently its successor, is
    scaled by 1 + s * clip(N(0, 1), -2, 2) with s this value; 0.05 is Dopamine's DrQ; 0 turns it off."""
    random_shift: int = 0
    """Image augmentation (DrQ, Kostrikov et al. 2021): each sampled frame stack, and independently
    its n-step successor, is padded by this many pixels (edges repeated) and cropped back to 84x84
    at a random offset. 4 is DrQ's value; 0 turns it off."""
    shift_per: Literal["stack", "game"] = "stack"
    """Offsets of --random-shift. stack: one per sampled stack (DrQ's paper); game: one for all of a game's
    stacks in an update, as the Dopamine code of the published DrQ(eps) runs drew one per batch."""
    reset_interval: int = 0
    """Gradient updates between resets of the Q-heads (and value streams) to fresh weights with fresh
    Adam moments, keeping the torso (SR-SPR, Nikishin et al. 2022); 0: never."""
    sharing: Literal["shared", "separate", "grouped", "soft", "learned"] = "shared"
    """How games share the torso. shared: one torso, a head per game; separate: a whole network per
    game (the no-transfer baseline, same frames per game); grouped: one torso per group of --groups;
    soft: a torso per game, equal at start, pulled toward their mean by --soft-coupling; learned: one
    torso whose channels each game gates on or off, all open at start (`mtdqn sharing RUN` shows the result)."""
    groups: str | None = None
    """Groups for --sharing grouped: 'pong,breakout;qbert,frostbite', or a file written by `mtdqn group`."""
    soft_coupling: float = 0.01
    """--sharing soft: weight of the penalty sum_g |theta_g - mean theta|^2 over the torsos' weights."""
    gate_sparsity: float = 1e-4
    """--sharing learned: weight of the sparsity cost (each game pays, per layer, the fraction of channels it keeps).
    Per channel the cost is this over the layer's channel count; on a Nature torso 1e-3 closed nearly every
    channel of every game within ~600 updates, 1e-4 let games keep 3-47% per layer (docs/multitask.md)."""
    gate_sharing: float = 1e-5
    """--sharing learned: weight of the sharing cost (each pair of games pays, per layer, the fraction of
    channels one keeps and the other drops)."""
    gate_lr: float = 1e-2
    """--sharing learned: Adam learning rate of the gate logits (they start at +3 and close below 0)."""
    gate_freeze_frames: int = 0
    """--sharing learned: frames per game after which the gates are fixed at their hard 0/1 values (0: never)."""
    torso_width: float = 1.0
    """Multiplier of every torso layer's channels (32, 64, 64, 512 at 1), e.g. 2 for a learned torso with
    room for games to keep channels of their own."""
    balance: Literal["equal", "weighted", "popart", "pcgrad"] = "equal"
    """How the games' TD losses combine. equal: their sum (each game's head gets the gradient a one-game
    agent would); weighted: weighted sum by --task-weights; popart: per-game PopArt-normalized targets
    (pair with --no-reward-clip for raw rewards); pcgrad: per-game torso gradients projected off each
    other where they conflict, then summed."""
    task_weights: str | None = None
    """--balance weighted: 'pong=2,breakout=0.5' (games not named weigh 1)."""
    popart_beta: float = 3e-4
    """--balance popart: step size of the per-game target statistics."""
    conflict_interval: int = 1_000
    """Gradient updates between measurements of gradient conflict and inter-task affinity (0: never).
    Written to conflict.csv in the run folder and to W&B as heatmaps; `mtdqn affinity RUN` sums them up."""
    conflict_batch_size: int = 128
    """Transitions (task-balanced) per conflict measurement."""
    affinity_step: Literal["adam", "sgd"] = "adam"
    """TAG's lookahead step for the affinity. adam: the step the learner's Adam would take on one game's
    gradient at --learning-rate (its preconditioning, without momentum): what the weights will do next;
    sgd: a plain SGD step of --affinity-lr."""
    affinity_lr: float = 0.1
    """--affinity-step sgd: SGD step of TAG's lookahead for the affinity. Affinities scale with it, their order does not;
    at 0.01 the loss changes of a real run were near float32 resolution (about 1e-6 relative)."""
    epsilon_start: float = 1.0
    """Initial exploration rate."""
    epsilon_end: float = 0.01
    """Final exploration rate."""
    epsilon_decay_frames: int = 25_000
    """Frames per game over which epsilon decays linearly from epsilon_start to epsilon_end, counted
    from learning_starts (Dopamine's schedule: no decay while the agent does not learn yet)."""

    eval_interval: int = 100_000
    """Frames per game between evaluations (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per game at each evaluation."""
    eval_epsilon: float = 0.001
    """Exploration rate during evaluation."""
    video: bool = False
    """At each evaluation, also record one MP4 episode per game (evals/frames_N/videos/, and W&B)."""
    checkpoint_interval: int = 100_000
    """Frames per game between checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 3
    """Newest checkpoints kept on disk (0: keep all)."""
    save_replay: bool = False
    """Also save the replay contents with each checkpoint (~7 KB per transition), so a resumed run
    learns from the same data instead of refilling learning_starts frames first."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/Inf loss or gradient: stop (diagnostic checkpoint, exit 3) or skip the batch and count it."""
    log_interval: int = 10_000
    """Frames per game between metric logs."""

    out: str = "runs/mtdqn"
    """Run folder: config, command, metrics, evaluations, checkpoints/."""
    track: bool = False
    """Log to Weights & Biases (offline when there is no API key or network)."""
    wandb_project: str = "mtdqn"
    """W&B project."""
    wandb_entity: str | None = None
    """W&B entity (user or team)."""
    wandb_tags: str | None = None
    """Comma-separated W&B tags added to the run's own (suite, sharing, balance, preset), e.g.
    variant:shared,seed:1 (mtdqn study tags every run with its study, variant and seed)."""
    wandb_group: str | None = None
    """W&B group, e.g. to gather seeds of one experiment."""
    wandb_checkpoints: bool = False
    """With --track, also upload every checkpoint as a W&B model artifact. Off by default: checkpoints are
    tens to hundreds of MB each. The artifact references the file where it lies (no copy under ~/.local),
    so keep the checkpoints (--keep-checkpoints 0) until an offline run is synced."""
    preset: str | None = None
    """Named configuration shipped with mtdqn (agents/presets/NAME.yaml), e.g. data-efficient;
    --config and flags override it option by option."""
    config: str | None = None
    """YAML file of options; flags on the command line override it (and it overrides --preset)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Network forward passes (acting and learning) in fp32, or in bfloat16 autocast with weights,
    optimizer, targets and loss in fp32. Measured on a Nature-DQN update at batch 32: with AMX, bf16
    was faster (24.5 ms vs 38.8 ms fp32); on a CPU with AVX512-BF16 but no AMX it was slower (77.7 ms
    vs 57.4 ms fp32). Check `lscpu` for amx, or let `mtdqn bench` say which is faster here."""

    backend: Literal["local", "ray"] = "local"
    """local: this process steps every env; ray: --num-actors Ray actors step them, this process learns."""
    num_actors: int = 2
    """Ray actors (--backend ray), one CPU each. Fewer than the games: each steps envs_per_game envs of
    every game; otherwise actor i steps envs_per_game envs of game i mod games."""
    ray_address: str | None = None
    """Ray cluster to join (--backend ray): host:port of `ray start --head`, or auto; unset: a local instance."""
    weight_publish_period: int = 25
    """Updates between copies of the learner's weights to the Ray actors (--backend ray)."""
    chunk_steps: int = 32
    """Vector steps per transition chunk a Ray actor sends (--backend ray); a lost actor loses at most one."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class ConfigError(ValueError):
    """A bad option value or config file; the message names it and what would be valid."""


PRESETS = Path(__file__).parent / "presets"


def presets() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def preset_options(name: str) -> dict:
    """The options of a shipped preset, checked like any config file."""
    if name not in presets():
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(presets())}")
    return from_yaml(str(PRESETS / f"{name}.yaml"))


def from_yaml(path: str) -> dict:
    """Options from a YAML mapping, with typos and wrong types refused before anything runs."""
    import difflib
    import typing

    import yaml

    file = Path(path)
    if file.is_dir():  # "does not exist" would send the user looking for a missing path
        saved, hint = file / "config.yaml", "e.g. a run's config.yaml"
        if saved.is_file():
            try:  # pointed at only if it is one --config takes (a run made with --preset records its name)
                from_yaml(str(saved))
                hint = f"give --config {saved} for the options of the run in it"
            except ConfigError:
                pass
        raise ConfigError(f"config file {path!r} is a folder: --config takes a YAML file of option: value; {hint}")
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must be a mapping of option: value")
    hints = typing.get_type_hints(TrainConfig)
    names = TrainConfig.field_names()
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in ("config", "preset") and value is None:  # a run's config.yaml records them; unset: nothing to do
            continue
        if name not in names or name in ("config", "preset"):
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown option {key!r} in {path}{hint}")
        value = _yaml_number(value, hints[name])
        if not _type_ok(value, hints[name]):
            raise ConfigError(f"option {key!r} in {path} has {type(value).__name__} value {value!r}, "
                              f"expected {_type_name(hints[name])}")
        out[name] = float(value) if hints[name] is float else value
    return out


def parse_number(text: str, integer: bool) -> int | float | None:
    """'1e5' as a number, for a field of that kind: an integer only when the value is integral
    ('2.5e3' -> 2500, '1e-3' -> None), so scientific notation works for counts as for rates."""
    import math

    text = text.strip()
    try:
        return int(text) if integer else float(text)
    except ValueError:
        pass
    try:
        x = float(text)
    except ValueError:
        return None
    if not integer:
        return x
    return int(x) if math.isfinite(x) and x.is_integer() else None


def number_kind(hint) -> str | None:
    """'int' or 'float' for a field of that type (optional or not), else None."""
    import typing

    kinds = {h for h in (typing.get_args(hint) or (hint,)) if h is not type(None)}
    return {frozenset({int}): "int", frozenset({float}): "float"}.get(frozenset(kinds))


def _yaml_number(value, hint):
    """PyYAML reads 1e-3 and 1e5 (no dot) as strings: numbers for numeric fields, other values as they are."""
    kind = number_kind(hint)
    if isinstance(value, str) and kind:
        number = parse_number(value, integer=kind == "int")
        return value if number is None else number
    return value


def _type_ok(value, hint) -> bool:
    import typing

    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    return any(_type_ok(value, h) if h is not type(None) else value is None for h in typing.get_args(hint))


def _type_name(hint) -> str:
    import typing

    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_args(hint):
        return " or ".join("null" if a is type(None) else a.__name__ for a in typing.get_args(hint))
    return hint.__name__
