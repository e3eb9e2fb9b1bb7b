"""Nature-DQN torsos with one Q-head per game, and the ways games share them.

`torso_of[g]` names the torso game g reads its features from: all zeros is hard sharing (one
torso, the default), `range(G)` is no sharing (a network per game), anything between is grouped
sharing. Soft sharing is `range(G)` with equal initial torsos plus `soft_penalty` in the loss.

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


NORMS = ("none", "layer")
PADDINGS = ("valid", "same")
INITS = ("torch", "xavier")


class NatureTorso(nn.Module):
    """Mnih et al. 2015: three convolutions and a 512-unit layer.

    Takes uint8 frames (scaled to [0, 1] here) or float frames already scaled, so a caller that
    feeds the same batch to two networks converts it once.

    norm="layer" normalizes every layer's pre-activations (GroupNorm with one group over each
    convolution's channels x height x width, LayerNorm on the dense layer), which keeps the
    features' scale fixed while TD targets move and the torso stays trainable longer (Lyle et al.
    2023; Gallici et al. 2024, PQN).

    padding="same" is TensorFlow/Flax's SAME padding, as Dopamine's JAX networks use it (DER, DrQ,
    SPR): feature maps 21x21, 11x11, 11x11 instead of 20x20, 9x9, 7x7, so the dense layer reads
    7,744 features instead of 3,136. init="xavier" is their Xavier-uniform weights with zero biases
    (torch's default is Kaiming-uniform with a=sqrt(5) and small random biases).
    """

    out_features = 512

    def __init__(self, in_channels: int = 4, norm: str = "none", padding: str = "valid", init: str = "torch"):
        super().__init__()
        for name, value, valid in (("norm", norm, NORMS), ("padding", padding, PADDINGS), ("init", init, INITS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(valid)}")
        layer, same = norm == "layer", padding == "same"

        def block(module, normalize, pad=None):
            # SAME pads (total // 2, total - total // 2) per side; pad modules only when asked, so the
            # default torso keeps its state-dict keys
            return ([nn.ZeroPad2d(pad)] if same and pad else []) + [module] + ([normalize] if layer else []) + [
                nn.ReLU()]

        self.net = nn.Sequential(
            *block(nn.Conv2d(in_channels, 32, 8, stride=4), nn.GroupNorm(1, 32), (2, 2, 2, 2)),
            *block(nn.Conv2d(32, 64, 4, stride=2), nn.GroupNorm(1, 64), (1, 2, 1, 2)),
            *block(nn.Conv2d(64, 64, 3, stride=1), nn.GroupNorm(1, 64), (1, 1, 1, 1)),
            nn.Flatten(),
            *block(nn.Linear(7744 if same else 3136, self.out_features), nn.LayerNorm(self.out_features)),
        )
        if init == "xavier":
            for m in self.net:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    xavier(m)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs if obs.is_floating_point() else obs.float() / 255.0)


def xavier(layer: nn.Module, fan_out: int | None = None) -> None:
    """Xavier-uniform weights (fan_out overridable, for one game's block of a shared head) and zero biases."""
    fan_out = layer.weight.shape[0] if fan_out is None else fan_out
    fan_in = layer.weight[0].numel()
    receptive = layer.weight[0, 0].numel()  # kernel area of a convolution, 1 for a linear layer
    bound = (6.0 / (fan_in + fan_out * receptive)) ** 0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        layer.bias.zero_()


class MultiHeadQNetwork(nn.Module):
    """Q(obs, game) for a list of games with different action counts.

    action_counts: actions of each game, in game-id order.
    dueling: per-game value and advantage streams (Wang et al. 2016), Q = V + A - mean(A).
    torso_of: torso index per game (default: one torso for all).
    tied_init: all torsos start from the same weights (soft sharing pulls them together from there).
    popart: heads output normalized values; `forward` unnormalizes with per-game (mu, sigma).
    norm, padding, init: the torsos' options (see NatureTorso); init="xavier" also initializes the heads
    so, each game's block of columns as its own layer.
    """

    def __init__(self, action_counts: list[int], dueling: bool = False, torso_of: list[int] | None = None,
                 tied_init: bool = False, popart: bool = False, norm: str = "none", padding: str = "valid",
                 init: str = "torch"):
        super().__init__()
        self.action_counts = [int(n) for n in action_counts]
        self.dueling = dueling
        self.torso_of = [0] * len(self.action_counts) if torso_of is None else [int(t) for t in torso_of]
        if len(self.torso_of) != len(self.action_counts) or sorted(set(self.torso_of)) != list(
                range(max(self.torso_of) + 1)):
            raise ValueError(f"torso_of {self.torso_of} must give each of {len(self.action_counts)} games a torso "
                             f"index, using every index from 0 up")
        self.tied_init = tied_init
        self.popart = popart
        self.norm, self.padding, self.init = norm, padding, init
        torso = dict(norm=norm, padding=padding, init=init)
        first = NatureTorso(**torso)
        self.torsos = nn.ModuleList([first] + [copy.deepcopy(first) if tied_init else NatureTorso(**torso)
                                               for _ in range(max(self.torso_of))])
        self.heads = nn.Linear(NatureTorso.out_features, sum(self.action_counts))
        self.values = nn.Linear(NatureTorso.out_features, len(self.action_counts)) if dueling else None
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
                "init": self.init}

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
        """The torsos' parameters: where games' gradients meet (heads are per game)."""
        return list(self.torsos.parameters())

    def features(self, obs: torch.Tensor, game_ids: torch.Tensor) -> torch.Tensor:
        if len(self.torsos) == 1:
            return self.torsos[0](obs)
        obs = obs if obs.is_floating_point() else obs.float() / 255.0
        which = self.torso_index[game_ids]
        out = obs.new_zeros(len(obs), NatureTorso.out_features)
        for t, torso in enumerate(self.torsos):
            rows = (which == t).nonzero().flatten()
            if len(rows):
                out = out.index_copy(0, rows, torso(obs[rows]))
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
        """Sum over torsos of the squared distance of their weights from the torsos' mean (0 with one torso)."""
        if len(self.torsos) == 1:
            return self.heads.weight.new_zeros(())
        total = 0.0
        for params in zip(*(t.parameters() for t in self.torsos)):
            stacked = torch.stack(params)
            total = total + (stacked - stacked.mean(0)).pow(2).sum()
        return total

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before per-group torsos named the single torso `torso.`
        for key in [k for k in state_dict if k.startswith(prefix + "torso.")]:
            state_dict[prefix + "torsos.0." + key[len(prefix + "torso."):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
