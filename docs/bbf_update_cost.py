"""What one update of a BBF-sized Q-network costs on this machine, next to our Nature-DQN network.

README, "Small budgets": the only published agent that clears IQM 0.25 on the four measured games
is BBF, whose network (bigger_better_faster/bbf/configs/BBF.gin) is an Impala CNN at 4x width
(2 residual blocks per stage), 2048 hidden units and a 51-atom head. This times, at batch 32, bf16
autocast, one torch thread: a target forward, an online forward and backward, an Adam step. It
leaves out BBF's 5-step latent prediction (SPR), so it is a lower bound on BBF's update.

    python docs/bbf_update_cost.py
"""

import time

import numpy as np
import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 3, padding=1)
        self.b = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(torch.relu(x))))


def impala(width: int = 4, blocks: int = 2) -> nn.Sequential:
    layers, channels_in = [], 4
    for channels in (16 * width, 32 * width, 32 * width):
        layers += [nn.Conv2d(channels_in, channels, 3, padding=1), nn.MaxPool2d(3, 2, padding=1)]
        layers += [Residual(channels) for _ in range(blocks)]
        channels_in = channels
    return nn.Sequential(*layers, nn.ReLU(), nn.Flatten())


def nature() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, 1), nn.ReLU(), nn.Flatten())


def q_network(kind: str, actions: int = 18) -> nn.Module:
    torso = impala() if kind == "bbf" else nature()
    features = torso(torch.zeros(1, 4, 84, 84)).shape[1]
    hidden, outputs = (2048, actions * 51) if kind == "bbf" else (512, actions)
    net = nn.Sequential(torso, nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, outputs))
    return net.to(memory_format=torch.channels_last)


def update_seconds(kind: str, repeats: int = 6) -> tuple[float, int]:
    online, target = q_network(kind), q_network(kind)
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-4)
    obs = torch.rand(32, 4, 84, 84)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.no_grad():
                target(obs)
            loss = online(obs).float().pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:])), sum(p.numel() for p in online.parameters())


if __name__ == "__main__":
    torch.set_num_threads(1)
    seconds = {}
    for kind in ("nature", "bbf"):
        seconds[kind], params = update_seconds(kind)
        print(f"{kind}: {params:,} parameters, {1000 * seconds[kind]:,.1f} ms per update")
    ratio = seconds["bbf"] / seconds["nature"]
    days = 800_000 * seconds["bbf"] / 86_400
    print(f"bbf / nature: {ratio:.1f}x; 2 updates per step x 4 games x 100k steps = 800,000 updates: {days:.1f} days")
