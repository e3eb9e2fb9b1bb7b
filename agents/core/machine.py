"""The machine a measurement ran on, in one record: a run's training time and a bench's rates mean something
only beside others from the same machine. Our own sessions' machines differ (an AMD EPYC without AMX,
where bf16 updates took 1.35x fp32's time, and Xeons with AMX, where they took 0.63x), so every training
segment appends this record to its run folder's machine.jsonl, `mtdqn bench` writes it into its settings,
and `mtdqn compare` says when the training times it sets side by side come from different machines.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from pathlib import Path

MACHINE_FILE = "machine.jsonl"


def cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, bool]:
    """The CPU's model name and whether it has AMX (bf16 matrix units), from /proc/cpuinfo where there is one."""
    model, flags = "", set()
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), "amx_bf16" in flags


def describe(device: str = "cpu") -> dict:
    """CPU model, AMX, cores, torch version and, on a GPU, its name: what makes two timings comparable."""
    import torch

    cpu, amx = cpu_info()
    out = {"cpu": cpu, "amx": amx, "cores": os.cpu_count(), "hostname": socket.gethostname(),
           "torch": torch.__version__}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def name(record: dict) -> str:
    """One machine in words, e.g. 'Intel(R) Xeon(R) Processor with AMX, 2 cores' (GPU runs: the GPU's name)."""
    if record.get("gpu"):
        return str(record["gpu"])
    return f"{record.get('cpu', '?')}{' with AMX' if record.get('amx') else ''}, {record.get('cores', '?')} cores"


def record_segment(run_dir: Path, device: str, threads: int, resumed: bool) -> dict:
    """Append this training segment's machine to the run folder's machine.jsonl (a resume adds a line)."""
    record = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed": resumed, "device": str(device),
              "threads": threads, **describe(device)}
    with (run_dir / MACHINE_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def run_machines(run_dir: Path) -> list[str]:
    """The machines a run's segments trained on, in words, in order and each once ([] where none is recorded)."""
    try:
        lines = (run_dir / MACHINE_FILE).read_text().splitlines()
    except OSError:
        return []
    names = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            names.append(name(record))
    return list(dict.fromkeys(names))
