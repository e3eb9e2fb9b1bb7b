"""Torsos: the Nature-DQN one (three convolutions and a dense layer, with the options the published
agents need: SAME padding, Xavier init, layer norm, width) and MinAtar's (one small convolution and a
dense layer), both with per-sample channel masks (the gates of learned sharing, multitask/gates.py).

A new torso goes beside these: a module with `out_features`, `channels` and `layer_names` (per gated
layer) and `forward(obs, masks=None, keep=None)`; MultiHeadQNetwork (network.py) builds it by name
(TORSOS) and routes games to it.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn


NORMS = ("none", "layer")
PADDINGS = ("valid", "same")
INITS = ("torch", "xavier")
LAYERS = ("conv1", "conv2", "conv3", "dense")


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

    width=W multiplies every layer's channels (32, 64, 64, 512 at 1): room for games that stop
    sharing to have channels of their own. Four multipliers (conv1, conv2, conv3, dense) size the
    layers apart, e.g. a narrow dense layer behind wider convolutions. `forward(obs, masks)` multiplies each layer's output
    (after its ReLU) by masks[k] [batch, channels], one row per sample: the gates of learned sharing.
    """

    def __init__(self, in_channels: int = 4, norm: str = "none", padding: str = "valid", init: str = "torch",
                 width: float = 1.0):
        super().__init__()
        for name, value, valid in (("norm", norm, NORMS), ("padding", padding, PADDINGS), ("init", init, INITS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(valid)}")
        widths = layer_widths(width)
        layer, same = norm == "layer", padding == "same"
        c1, c2, c3, dense = self.channels = tuple(max(1, round(c * w)) for c, w in zip((32, 64, 64, 512), widths))
        self.out_features = dense
        self.layer_names = LAYERS

        def block(module, normalize, pad=None):
            # SAME pads (total // 2, total - total // 2) per side; pad modules only when asked, so the
            # default torso keeps its state-dict keys
            return ([nn.ZeroPad2d(pad)] if same and pad else []) + [module] + ([normalize] if layer else []) + [
                nn.ReLU()]

        self.net = nn.Sequential(
            *block(nn.Conv2d(in_channels, c1, 8, stride=4), nn.GroupNorm(1, c1), (2, 2, 2, 2)),
            *block(nn.Conv2d(c1, c2, 4, stride=2), nn.GroupNorm(1, c2), (1, 2, 1, 2)),
            *block(nn.Conv2d(c2, c3, 3, stride=1), nn.GroupNorm(1, c3), (1, 1, 1, 1)),
            nn.Flatten(),
            *block(nn.Linear(c3 * (121 if same else 49), dense), nn.LayerNorm(dense)),
        )
        if init == "xavier":
            for m in self.net:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    xavier(m)

    levels = 255.0  # uint8 grey levels: frames / levels are in [0, 1]

    def forward(self, obs: torch.Tensor, masks: list[torch.Tensor] | None = None,
                keep: list[torch.Tensor] | None = None, game_ids: torch.Tensor | None = None) -> torch.Tensor:
        """keep: per layer, the indices of the channels some game uses (learned sharing after the freeze).
        Only those are computed, from slices of the weights, and the dense layer's output is scattered back
        to full width with zeros where no game looks: the values of masking them, without their cost.
        game_ids: unused (every game reads the same input layer)."""
        x = obs if obs.is_floating_point() else obs.float() / self.levels
        if masks is None:
            return self.net(x)
        relus, kept = iter(masks), iter(keep or ())
        previous, block = None, 1  # the kept output channels of the layer before, and inputs per channel
        for module in self.net:
            if keep is not None and isinstance(module, (nn.Conv2d, nn.Linear)):
                out = next(kept)
                weight = module.weight[out]
                if previous is not None:
                    cols = (previous[:, None] * block + torch.arange(block, device=previous.device)).flatten()
                    weight = weight[:, cols]
                x = (nn.functional.linear(x, weight, module.bias[out]) if isinstance(module, nn.Linear) else
                     nn.functional.conv2d(x, weight, module.bias[out], module.stride, module.padding))
                previous = out
                continue
            if isinstance(module, nn.Flatten):
                block = x.shape[-2] * x.shape[-1]  # channel c of a feature map is inputs c*H*W ... of the dense layer
            x = module(x)
            if isinstance(module, nn.ReLU):
                mask = next(relus).to(x.dtype)
                mask = mask if keep is None else mask[:, previous]
                x = x * (mask[:, :, None, None] if x.dim() == 4 else mask)
        if keep is not None:
            x = x.new_zeros(len(x), self.out_features).index_copy(1, previous, x)
        return x


class MinAtarTorso(nn.Module):
    """Young & Tian 2019's network for MinAtar: a 3x3 convolution of 16 channels (stride 1, no padding) over
    the 10x10 grid, then a 128-unit layer, ReLUs after each.

    The games have 4 to 10 binary channels; every observation arrives zero-padded to `in_channels` (10) so
    one torso reads them all. With `games` > 0 (`input="adapter"`) each game first maps its channels
    through a 1x1 convolution of its own (identity at start), so the shared filters need not read game A's
    "ball" and game B's "enemy" from the same input plane. Observations are 0/1 already: no scaling.
    `norm`, `padding`, `init` and `width` as NatureTorso's (padding "same" keeps the grid 10x10).
    """

    def __init__(self, in_channels: int = 10, norm: str = "none", padding: str = "valid", init: str = "torch",
                 width: float = 1.0, games: int = 0):
        super().__init__()
        for name, value, valid in (("norm", norm, NORMS), ("padding", padding, PADDINGS), ("init", init, INITS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(valid)}")
        widths = layer_widths(width)
        conv, dense = self.channels = (max(1, round(16 * widths[0])), max(1, round(128 * widths[3])))
        self.out_features = dense
        layer, side = norm == "layer", 10 if padding == "same" else 8
        self.adapter = nn.Parameter(torch.eye(in_channels).repeat(games, 1, 1)) if games else None
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, conv, 3, stride=1, padding=1 if padding == "same" else 0),
            *([nn.GroupNorm(1, conv)] if layer else []), nn.ReLU(), nn.Flatten(),
            nn.Linear(conv * side * side, dense), *([nn.LayerNorm(dense)] if layer else []), nn.ReLU())
        if init == "xavier":
            for m in self.net:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    xavier(m)

    levels = 1.0  # the grid's channels are 0/1 already
    layer_names = ("conv1", "dense")

    def forward(self, obs: torch.Tensor, masks: list[torch.Tensor] | None = None,
                keep: list[torch.Tensor] | None = None, game_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`keep` is accepted for the interface and not needed: the masks already zero what no game keeps,
        and the network is too small for pruning to pay. `game_ids` selects each sample's input adapter."""
        x = obs.float()
        if self.adapter is not None:
            x = torch.einsum("boc,bchw->bohw", self.adapter[game_ids], x)
        relus = iter(masks or ())
        for module in self.net:
            x = module(x)
            if isinstance(module, nn.Conv2d):  # one layout from here to Flatten's copy: a seed batch's grouped
                x = x.contiguous()  # convolution returns channels-last; ReLU's backward on mixed layouts was 5x slower
            if masks is not None and isinstance(module, nn.ReLU):
                mask = next(relus).to(x.dtype)
                x = x * (mask[:, :, None, None] if x.dim() == 4 else mask)
        return x


TORSOS = {"nature": NatureTorso, "minatar": MinAtarTorso}


def layer_widths(width) -> tuple[float, float, float, float]:
    """The channel multiplier of each layer (conv1, conv2, conv3, dense) from one number or four."""
    def number(w):
        return isinstance(w, numbers.Real) and not isinstance(w, bool)

    widths = (width,) * 4 if number(width) else tuple(width) if isinstance(width, (tuple, list)) else ()
    if len(widths) != 4 or not all(number(w) and w > 0 for w in widths):
        raise ValueError(f"torso width must be a number > 0 or four of them (conv1, conv2, conv3, dense), got {width}")
    return tuple(float(w) for w in widths)


def xavier(layer: nn.Module, fan_out: int | None = None) -> None:
    """Xavier-uniform weights (fan_out overridable, for one game's block of a shared head) and zero biases."""
    fan_out = layer.weight.shape[0] if fan_out is None else fan_out
    fan_in = layer.weight[0].numel()
    receptive = layer.weight[0, 0].numel()  # kernel area of a convolution, 1 for a linear layer
    bound = (6.0 / (fan_in + fan_out * receptive)) ** 0.5
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        layer.bias.zero_()
