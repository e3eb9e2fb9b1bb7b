"""Q(obs, game): torsos (torso.py) with one Q-head per game, wired the way the games share them.

`torso_of[g]` names the torso game g reads its features from: all zeros is hard sharing (one
torso, the default), `range(G)` is no sharing (a network per game), anything between is grouped
sharing. Soft sharing is `range(G)` with equal initial torsos plus `soft_penalty` in the loss. Learned
sharing (`gated=True`) is one torso whose channels each game switches on or off with gates of its
own, trained with the loss. The modes by name: multitask/sharing.py; the gates: multitask/gates.py.

All heads live in one linear layer whose output columns are the games' action sets laid end to
end, so a mixed-game batch costs one matmul; `forward(obs, game_ids)` gathers each sample's own
columns into a [batch, max_actions] tensor and fills the columns past that game's action count
with -inf, so argmax and max never pick an action the game does not have.

With `popart=True` the heads output normalized values and `forward` returns sigma_g * n + mu_g
(Hessel et al. 2019); `rescale_heads` changes (mu, sigma) without changing `forward`'s output.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mtdqn.agents.core.torso import TORSOS, layer_widths, xavier
from mtdqn.agents.multitask.gates import GATE_INIT, hard_gate, sharing_cost, sparsity_cost, straight_through_gate
from mtdqn.agents.multitask.sharing import soft_penalty


class MultiHeadQNetwork(nn.Module):
    """Q(obs, game) for a list of games with different action counts.

    action_counts: actions of each game, in game-id order.
    dueling: per-game value and advantage streams (Wang et al. 2016), Q = V + A - mean(A).
    torso_of: torso index per game (default: one torso for all).
    tied_init: all torsos start from the same weights (soft sharing pulls them together from there).
    popart: heads output normalized values; `forward` unnormalizes with per-game (mu, sigma).
    norm, padding, init, width: the torsos' options (see NatureTorso; width is one multiplier or four); init="xavier" also initializes the
    heads so, each game's block of columns as its own layer.
    gated: learned sharing, one torso with per-game channel gates (parameters `gate_logits.K` [G, channels]
    of the torso's gated layer K, and a buffer `gates_frozen`, so checkpoints carry them like any weight).
    torso: a name in torso.TORSOS ("nature" for Atari frames, "minatar" for MinAtar's grids); adapter: the
    MinAtar torso's per-game 1x1 input convolution (else the games' zero-padded channels go in as they are).
    """

    def __init__(self, action_counts: list[int], dueling: bool = False, torso_of: list[int] | None = None,
                 tied_init: bool = False, popart: bool = False, norm: str = "none", padding: str = "valid",
                 init: str = "torch", gated: bool = False, width: float = 1.0, torso: str = "nature",
                 adapter: bool = False):
        super().__init__()
        self.action_counts = [int(n) for n in action_counts]
        self.dueling = dueling
        self.torso_of = [0] * len(self.action_counts) if torso_of is None else [int(t) for t in torso_of]
        if len(self.torso_of) != len(self.action_counts) or sorted(set(self.torso_of)) != list(
                range(max(self.torso_of) + 1)):
            n = len(self.action_counts)
            raise ValueError(f"torso_of {self.torso_of} must give each of {n} game{'s' * (n != 1)} a torso "
                             f"index, using every index from 0 up")
        self.tied_init = tied_init
        self.popart = popart
        self.norm, self.padding, self.init = norm, padding, init
        widths = layer_widths(width)
        self.width = widths[0] if len(set(widths)) == 1 else widths
        if torso not in TORSOS:
            raise ValueError(f"unknown torso {torso!r}: choose one of {', '.join(TORSOS)}")
        if adapter and torso != "minatar":
            raise ValueError("adapter (a per-game input layer) is the MinAtar torso's: torso must be 'minatar'")
        self.torso, self.adapter = torso, adapter
        options = dict(norm=norm, padding=padding, init=init, width=width,
                       **({"games": self.num_games if adapter else 0} if torso == "minatar" else {}))
        first = TORSOS[torso](**options)
        self.torsos = nn.ModuleList([first] + [copy.deepcopy(first) if tied_init else TORSOS[torso](**options)
                                               for _ in range(max(self.torso_of))])
        self.gated = gated
        self._kept = None  # kept_channels' cache: [] when a frozen network prunes nothing
        if gated:
            if len(self.torsos) != 1:
                raise ValueError("gated (learned) sharing gates one torso: torso_of must be all zeros")
            self.gate_logits = nn.ParameterList([nn.Parameter(torch.full((self.num_games, c), GATE_INIT))
                                                 for c in first.channels])
            self.register_buffer("gates_frozen", torch.tensor(False))
        features = first.out_features
        self.heads = nn.Linear(features, sum(self.action_counts))
        self.values = nn.Linear(features, len(self.action_counts)) if dueling else None
        if init == "xavier":
            self.init_heads()
        max_actions = max(self.action_counts)
        offsets = torch.tensor([0] + self.action_counts[:-1]).cumsum(0)
        cols = torch.arange(max_actions)
        valid = cols[None, :] < torch.tensor(self.action_counts)[:, None]
        self.register_buffer("columns", torch.where(valid, offsets[:, None] + cols[None, :], 0), persistent=False)
        self.register_buffer("valid", valid, persistent=False)
        self.register_buffer("torso_index", torch.tensor(self.torso_of), persistent=False)
        # the game of each output column of `heads` (PopArt rescales columns per game)
        self.register_buffer("column_game", torch.repeat_interleave(torch.arange(len(self.action_counts)),
                                                                    torch.tensor(self.action_counts)), persistent=False)
        if popart:
            self.register_buffer("popart_mu", torch.zeros(self.num_games))
            self.register_buffer("popart_sigma", torch.ones(self.num_games))
        # channels-last convolutions: ~12% faster per update on the 2-core CPU we develop on
        self.to(memory_format=torch.channels_last)

    @property
    def num_games(self) -> int:
        return len(self.action_counts)

    def spec(self) -> dict:
        """What it takes to rebuild this architecture (stored in checkpoints)."""
        return {"action_counts": self.action_counts, "dueling": self.dueling, "torso_of": self.torso_of,
                "tied_init": self.tied_init, "popart": self.popart, "norm": self.norm, "padding": self.padding,
                "init": self.init, "gated": self.gated, "width": self.width,
                **({"torso": self.torso, "adapter": self.adapter} if self.torso != "nature" else {})}

    @torch.no_grad()
    def init_heads(self) -> None:
        """Fresh head (and value stream) weights: torch's default, or Xavier with each game's block of
        columns initialized as a layer of its own (its fan-out is its action count, not all games')."""
        layers = [self.heads] + ([self.values] if self.dueling else [])
        blocks = [self.action_counts] + ([[1] * self.num_games] if self.dueling else [])
        for layer, sizes in zip(layers, blocks):
            fresh = nn.Linear(layer.in_features, layer.out_features).to(layer.weight.device)
            if self.init == "xavier":
                for rows in torch.split(torch.arange(layer.out_features), sizes):
                    xavier_rows = nn.Linear(layer.in_features, len(rows))
                    xavier(xavier_rows)
                    fresh.weight[rows] = xavier_rows.weight
                fresh.bias.zero_()
            layer.weight.copy_(fresh.weight)
            layer.bias.copy_(fresh.bias)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The torsos' parameters: where games' gradients meet (heads and gates are per game)."""
        return list(self.torsos.parameters())

    def gate_parameters(self) -> list[nn.Parameter]:
        """The gate logits (none unless gated): the learner gives them a learning rate of their own."""
        return list(self.gate_logits) if self.gated else []

    def hard_gates(self) -> list[torch.Tensor]:
        """Per layer, [G, channels] of exact 0/1: which channels each game uses (evaluation and acting use these)."""
        return [hard_gate(a) for a in self.gate_logits]

    def gates(self) -> list[torch.Tensor]:
        """The gates a forward pass multiplies by: sampled with a straight-through gradient where a gradient
        is taken in training mode and the gates are not frozen, the hard gates everywhere else (acting,
        TD targets, evaluation, after the freeze), so those stay deterministic."""
        if not (self.training and torch.is_grad_enabled()) or bool(self.gates_frozen):
            return self.hard_gates()
        return [straight_through_gate(a) for a in self.gate_logits]

    @torch.no_grad()
    def freeze_gates(self) -> None:
        """Fix every gate at its hard 0/1 value from now on: the logits get no more gradient, and the
        channels no game keeps are no longer computed (`kept_channels`)."""
        self.gates_frozen.fill_(True)
        self._kept = None

    def kept_channels(self) -> list[torch.Tensor] | None:
        """Per layer, the indices of the channels at least one game keeps, once the gates are frozen; None
        while they train, when nothing is pruned, or under norm="layer" (whose statistics run over every
        channel, so dropping one would change the others' values)."""
        if not (self.gated and bool(self.gates_frozen)) or self.norm != "none":
            return None
        kept = self._kept
        if kept is None or (kept and kept[0].device != self.gate_logits[0].device):
            used = [g.any(0) for g in self.hard_gates()]
            self._kept = [] if all(u.all() for u in used) else [u.nonzero().flatten() for u in used]
        return self._kept or None

    def gate_penalties(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sparsity, sharing) costs of the current keep probabilities; zeros once frozen (nothing moves)."""
        if bool(self.gates_frozen):
            zero = self.heads.weight.new_zeros(())
            return zero, zero
        probs = [torch.sigmoid(a) for a in self.gate_logits]
        return sparsity_cost(probs), sharing_cost(probs)

    def features(self, obs: torch.Tensor, game_ids: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.torsos[0](obs, [g[game_ids] for g in self.gates()], self.kept_channels(), game_ids=game_ids)
        if len(self.torsos) == 1:
            return self.torsos[0](obs, game_ids=game_ids)
        obs = obs if obs.is_floating_point() else obs.float() / self.torsos[0].levels
        which = self.torso_index[game_ids]
        out = obs.new_zeros(len(obs), self.torsos[0].out_features)
        for t, torso in enumerate(self.torsos):
            rows = (which == t).nonzero().flatten()
            if len(rows):
                out = out.index_copy(0, rows, torso(obs[rows], game_ids=game_ids[rows]))
        return out

    def normalized(self, obs: torch.Tensor, game_ids: torch.Tensor) -> torch.Tensor:
        """The heads' outputs (normalized values under PopArt, Q-values otherwise), -inf past a game's actions.

        The heads and the dueling sum run in fp32 even under bf16 autocast: bfloat16's 8-bit mantissa
        rounds V + A - mean(A) to steps of V/128, which erases small advantage gaps and flips greedy
        actions. They are a sliver of the network's cost; the torso keeps the autocast.
        """
        features = self.features(obs, game_ids)
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            valid = self.valid[game_ids]
            q = self.heads(features).gather(1, self.columns[game_ids])
            if self.dueling:
                adv_mean = (q * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True)
                value = self.values(features).gather(1, game_ids[:, None])
                q = value + q - adv_mean
            return q.masked_fill(~valid, float("-inf"))

    def forward(self, obs: torch.Tensor, game_ids: torch.Tensor) -> torch.Tensor:
        q = self.normalized(obs, game_ids)
        if self.popart:
            q = q * self.popart_sigma[game_ids, None] + self.popart_mu[game_ids, None]
        return q

    @torch.no_grad()
    def rescale_heads(self, new_mu: torch.Tensor, new_sigma: torch.Tensor) -> None:
        """PopArt's output-preserving update: new statistics, heads rescaled so `forward` is unchanged.

        n' = (sigma * n + mu - mu') / sigma' for every game; the advantage stream (dueling) or the
        whole head scales by sigma / sigma', and the offset goes into the bias of the value stream
        (dueling: A - mean(A) ignores a constant) or of every action column.
        """
        scale = self.popart_sigma / new_sigma
        shift = (self.popart_mu - new_mu) / new_sigma
        per_column = self.column_game
        self.heads.weight.mul_(scale[per_column, None])
        self.heads.bias.mul_(scale[per_column])
        if self.dueling:
            self.values.weight.mul_(scale[:, None])
            self.values.bias.mul_(scale).add_(shift)
        else:
            self.heads.bias.add_(shift[per_column])
        self.popart_mu.copy_(new_mu)
        self.popart_sigma.copy_(new_sigma)

    def soft_penalty(self) -> torch.Tensor:
        """Soft sharing's coupling of the torsos (multitask/sharing.py)."""
        return soft_penalty(self.torsos)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._kept = None  # other gates: the kept channels are found again
        # checkpoints from before per-group torsos named the single torso `torso.`
        for key in [k for k in state_dict if k.startswith(prefix + "torso.")]:
            state_dict[prefix + "torsos.0." + key[len(prefix + "torso."):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
