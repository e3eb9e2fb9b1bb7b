"""Which option values a run can use: every check `mtdqn train` makes before anything is written, each
failing with a ConfigError that names the value and what would be valid."""

from __future__ import annotations

from mtdqn.agents.training.config import ConfigError, TrainConfig, preset_options


_POSITIVE = ("frames_per_game", "max_episode_frames", "envs_per_game", "threads", "replay_size", "batch_size", "n_step",
             "target_update_period", "eval_episodes", "log_interval", "conflict_batch_size",
             "num_actors", "weight_publish_period", "chunk_steps")
_NON_NEGATIVE = ("env_threads", "learning_starts", "max_grad_norm", "eval_interval", "checkpoint_interval",
                 "keep_checkpoints", "conflict_interval", "epsilon_decay_frames", "soft_coupling", "random_shift",
                 "reset_interval", "intensity_noise", "gate_sparsity", "gate_sharing",
                 "gate_freeze_frames")
_UNIT_INTERVAL = ("gamma", "epsilon_start", "epsilon_end", "eval_epsilon", "popart_beta", "target_tau")


def validate(cfg: TrainConfig, given: set[str] = frozenset()) -> TrainConfig:
    """Raise ConfigError on the first value no run could use; `given`: the --flags on the command line, for
    options that contradict each other only when both are asked for."""
    for name in _POSITIVE:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    for name in _NON_NEGATIVE:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    for name in _UNIT_INTERVAL:
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(cfg, name)}")
    for name in ("learning_rate", "adam_eps", "affinity_lr", "gate_lr", "torso_width", "train_frequency"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(cfg, name)}")
    long = [t for t in (cfg.wandb_tags or "").split(",") if len(t.strip()) > 64]
    if long:
        raise ConfigError(f"--wandb-tags {long[0].strip()!r} is {len(long[0].strip())} characters: W&B takes tags of "
                          f"at most 64")
    if cfg.wandb_checkpoints and not cfg.track:
        raise ConfigError("--wandb-checkpoints uploads checkpoints to W&B: add --track")
    check_family(cfg)
    check_intervals(cfg)
    check_target(cfg, given)
    check_life_loss(cfg)
    check_device(cfg.device)
    check_multitask(cfg)
    check_precision(cfg.precision, cfg.device)
    if cfg.backend == "ray":
        check_ray(cfg.ray_address)
    return cfg


def check_family(cfg: TrainConfig) -> None:
    """The protocol fits the games' family and the input layer is MinAtar's (each resolved from the games when
    not given, and recorded so). An unknown game is left to the caller's own message."""
    from mtdqn.envs import PROTOCOLS, GameError, resolve_games
    from mtdqn.envs.protocol import default_protocol, family_of

    try:
        games = resolve_games(cfg.suite)
    except GameError:
        return
    family = family_of(games)
    if cfg.protocol is None:
        cfg.protocol = default_protocol(games)
    if PROTOCOLS[cfg.protocol].family != family:
        valid = ", ".join(p for p, v in PROTOCOLS.items() if v.family == family)
        names = {"ale": "ALE", "minatar": "MinAtar"}
        raise ConfigError(f"--protocol {cfg.protocol} is for {names[PROTOCOLS[cfg.protocol].family]} games and "
                          f"--suite {cfg.suite} is {names[family]}: choose one of {valid}")
    if family == "minatar" and cfg.random_shift:
        raise ConfigError(f"--random-shift {cfg.random_shift} shifts ALE's 84x84 frames; on MinAtar's 10x10 grid it "
                          f"would move objects off the board: use --random-shift 0")
    if cfg.input_layer is None:
        cfg.input_layer = "per-game" if family == "minatar" and len(games) > 1 else "shared"
    if cfg.input_layer == "per-game" and family != "minatar":
        raise ConfigError("--input-layer per-game is for MinAtar games (4 to 10 channels each); ALE games share "
                          "one input format: use --input-layer shared")


def check_intervals(cfg: TrainConfig) -> None:
    """Intervals count emulator frames per game, which advance an agent step (4 frames on ALE) at a time: one
    shorter than a step would act at every step of the loop."""
    from mtdqn.envs import PROTOCOLS

    if cfg.protocol is None:  # an unknown suite: its own error comes first
        return
    step = PROTOCOLS[cfg.protocol].frameskip
    for name, zero in (("eval_interval", "0 (only at the end) or "), ("checkpoint_interval", "0 (only at the end) or "),
                       ("log_interval", "")):
        if 0 < getattr(cfg, name) < step:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(cfg, name)} is less than one agent step "
                              f"({step} emulator frames per game): use {zero}at least {step}")


def check_target(cfg: TrainConfig, given: set[str]) -> None:
    """--target-tau > 0 averages the target after every update instead of syncing it every
    --target-update-period updates: asking for both is asking for two target updates at once."""
    if cfg.target_tau > 0 and "--target-update-period" in given:
        raise ConfigError(f"--target-update-period {cfg.target_update_period} sets periodic target syncs, which "
                          f"--target-tau {cfg.target_tau:g} replaces with Polyak averaging after every update: give "
                          "one of the two (--target-tau 0 keeps the periodic syncs)")


def check_life_loss(cfg: TrainConfig) -> None:
    """A stack restarted at a lost life needs that life to end the learner's episode too."""
    from mtdqn.envs import PROTOCOLS

    if cfg.protocol is None:  # an unknown suite: its own error comes first
        return
    if cfg.life_loss_reset and not (cfg.life_loss_terminal or PROTOCOLS[cfg.protocol].life_loss_terminal):
        preset = cfg.preset and preset_options(cfg.preset).get("life_loss_reset")
        raise ConfigError(f"--life-loss-reset{f' (on in --preset {cfg.preset})' if preset else ''} needs life-loss "
                          f"terminals, which --protocol {cfg.protocol} has not: use --protocol atari100k or add "
                          "--life-loss-terminal" + (" or --no-life-loss-reset" if preset else ""))
    if PROTOCOLS[cfg.protocol].life_loss_terminal:  # recorded as applied: config.yaml never reads as a contradiction
        cfg.life_loss_terminal = True


def check_multitask(cfg: TrainConfig) -> None:
    """Options that only make sense together, and groups/weights that name the suite's games."""
    from mtdqn.agents.multitask.sharing import GroupsError, groups_string, parse_groups
    from mtdqn.envs import resolve_games

    if cfg.sharing == "grouped" and not cfg.groups:
        raise ConfigError("--sharing grouped needs --groups 'a,b;c,d' (or a file from `mtdqn group`)")
    if cfg.groups and cfg.sharing != "grouped":
        raise ConfigError(f"--groups is for --sharing grouped, but --sharing is {cfg.sharing!r}")
    if cfg.task_weights and cfg.balance != "weighted":
        raise ConfigError(f"--task-weights is for --balance weighted, but --balance is {cfg.balance!r}")
    if cfg.balance == "weighted" and not cfg.task_weights:
        raise ConfigError("--balance weighted needs --task-weights, e.g. 'pong=2,breakout=0.5'")
    if cfg.groups or cfg.task_weights:
        games = resolve_games(cfg.suite)
        if cfg.groups:
            try:
                group_of = parse_groups(cfg.groups, games)
            except GroupsError as e:
                raise ConfigError(str(e)) from None
            # recorded as the groups themselves, not a file's path: a resume from anywhere trains the same groups
            cfg.groups = groups_string([[g for g, k in zip(games, group_of) if k == i] for i in sorted(set(group_of))])
        if cfg.task_weights:
            task_weights(cfg.task_weights, games)


def task_weights(spec: str, games: list[str]) -> list[float]:
    """Per-game loss weights from 'pong=2,breakout=0.5'; games not named weigh 1."""
    weights = dict.fromkeys(games, 1.0)
    for item in filter(None, (s.strip() for s in spec.split(","))):
        game, _, value = item.partition("=")
        game = game.strip()
        if game not in weights:
            raise ConfigError(f"--task-weights names {game!r}, which is not in the suite ({','.join(games)})")
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(f"--task-weights: {item!r} is not game=number") from None
        if not weight >= 0:
            raise ConfigError(f"--task-weights: weight of {game!r} must be >= 0, got {value}")
        weights[game] = weight
    if not any(weights.values()):
        raise ConfigError("--task-weights: at least one game needs a positive weight")
    return [weights[g] for g in games]


def check_ray(address: str | None) -> None:
    """--backend ray needs the optional Ray extra, and an address, if given, of a reachable form."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ConfigError("--backend ray needs Ray, which is not installed: pip install 'mtdqn[ray]' "
                          "(or .[ray] in the source folder), or use --backend local")
    if address is not None and not address.strip():
        raise ConfigError("--ray-address is empty: give host:port of a Ray head node, or auto, or leave it out")


def check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU here: use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} does not exist: {torch.cuda.device_count()} GPU(s) visible")
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}: use cpu, cuda or cuda:N")


def check_precision(precision: str, device: str) -> None:
    import torch

    if precision == "bf16" and torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--precision bf16 needs a GPU with bfloat16 support (Ampere or newer); {device!r} "
                          "has none: use --precision fp32")
