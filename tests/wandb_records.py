"""Read back what an offline W&B run logged, from its `run-*.wandb` file.

The file is a LevelDB-style log (32 KiB blocks, 7-byte record headers, FULL/FIRST/MIDDLE/LAST
chunks) after a 7-byte file header; each record is a `wandb_internal_pb2.Record` protobuf.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
FILE_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, chunks = FILE_HEADER, []
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        if kind in (FULL, FIRST):
            chunks = [payload]
        else:
            chunks.append(payload)
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(b"".join(chunks))
            yield record


def run_file(wandb_dir: Path) -> Path:
    files = sorted(Path(wandb_dir).glob("offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {wandb_dir}"
    return files[-1]


def history(path: Path) -> list[dict]:
    """Every `log` call as {key: value}, values JSON-decoded."""
    rows = []
    for r in records(path):
        if r.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item})
    return rows


def config(path: Path) -> dict:
    out = {}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        updates = r.config.update if kind == "config" else r.run.config.update if kind == "run" else []
        for item in updates:
            out[item.key] = json.loads(item.value_json)
    return out


def artifacts(path: Path, kind: str | None = None) -> list[str]:
    """Names of the artifacts logged, optionally only those of one type (model, run_table, ...)."""
    return [r.artifact.name for r in records(path)
            if r.WhichOneof("record_type") == "artifact" and kind in (None, r.artifact.type)]


def run_record(path: Path):
    """The run's own record: id, group (run_group), tags, name."""
    return next(r.run for r in records(path) if r.WhichOneof("record_type") == "run")
