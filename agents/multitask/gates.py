"""Learned sharing's gates: which channels of the one shared torso each game keeps.

Plain functions of the gate logits [G, channels] per layer. MultiHeadQNetwork (core/network.py) holds the
logits as parameters and multiplies the torso's layers by these gates; the learner adds the two costs
below to the loss; multitask/structure.py reads the hard gates back as overlaps and groups.
"""

from __future__ import annotations

import torch


# Learned sharing: game g keeps channel c of layer l when its gate logit a[g, c] > 0, and always keeps
# its highest-logit channel of every layer: a game that closed a whole layer would see constant features
# from there on, learn nothing, and get no gradient to reopen it. While training,
# the forward pass uses a Gumbel-sigmoid sample with a straight-through gradient (AdaShare, Sun et al.
# 2020; Louizos et al. 2018's hard-concrete family): 1[a + n > 0] forward, d sigmoid((a + n) / T) / da
# backward, n a logistic noise bounded by GATE_NOISE. Logits start at GATE_INIT > GATE_NOISE, so every
# gate is open at step 0: the network is then exactly hard sharing, noise or not.
GATE_INIT = 3.0
GATE_NOISE = 2.5
GATE_TEMPERATURE = 1.0


def hard_gate(logits: torch.Tensor, noisy: torch.Tensor | None = None) -> torch.Tensor:
    """0/1 gates [G, channels]: open where the logits (or a noisy sample of them) are above 0, and at each
    game's highest logit, so no game closes a whole layer."""
    top = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).bool()
    return (((logits if noisy is None else noisy) > 0) | top).to(logits.dtype)


def straight_through_gate(logits: torch.Tensor) -> torch.Tensor:
    """Gumbel-sigmoid sample of 0/1 gates with a straight-through gradient (see GATE_INIT above).

    The logistic noise log(u / (1 - u)) is bounded to +-GATE_NOISE (u drawn away from 0 and 1), so
    a logit above GATE_NOISE is a gate that is surely open, one below -GATE_NOISE surely closed.
    """
    bound = torch.sigmoid(torch.tensor(GATE_NOISE)).item()
    u = torch.empty_like(logits).uniform_(1 - bound, bound)
    noisy = logits + torch.log(u) - torch.log1p(-u)
    soft = torch.sigmoid(noisy / GATE_TEMPERATURE)
    return hard_gate(logits, noisy) + (soft - soft.detach())  # parenthesized: exactly 0 forward, so exactly 0/1


def sparsity_cost(probs: list[torch.Tensor]) -> torch.Tensor:
    """Each game pays, per layer, the fraction of the layer's channels it keeps: sum_l sum_g mean_c p[l][g, c].

    probs: per layer, [G, channels] keep probabilities. A layer costs the same whatever its width.
    """
    return sum(p.mean(1).sum() for p in probs)


def sharing_cost(probs: list[torch.Tensor]) -> torch.Tensor:
    """Games pay for using different channels: sum_l sum_{g<h} mean_c |p[l][g, c] - p[l][h, c]| (AdaShare's
    sharing loss without its layer weights): 0 when every game keeps the same channels."""
    total = 0.0
    for p in probs:
        diff = (p[:, None, :] - p[None, :, :]).abs().mean(-1)
        total = total + diff.triu(1).sum()
    return total

