"""Read an offline W&B run file (`offline-run-*/run-*.wandb`) back into its records.

wandb 0.31 has no Python reader any more (the writer lives in its Go core); the file is a
LevelDB-style log: a 7-byte header (':W&B', 0xBEE1, version), then 32 KiB blocks of chunks, each
`crc32c:u32 length:u16 type:u8 payload`, type 1 = a whole record, 2/3/4 = first/middle/last
piece of one; a block's tail shorter than a chunk header is zero padding. Each record is a
`wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7


def records(path: Path) -> list:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # zero padding at a block's end
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            break
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            out.append(rec)
            pending = b""
    return out


def run_file(run_dir: Path) -> Path:
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    return path


def summary(run_dir: Path) -> dict:
    """What a W&B user sees of the run: the run record, config updates, history rows, artifacts."""
    recs = records(run_file(run_dir))
    runs = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
    configs = [{item.key: json.loads(item.value_json) for item in r.config.update}
               for r in recs if r.WhichOneof("record_type") == "config"]
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
               for r in recs if r.WhichOneof("record_type") == "history"]
    artifacts = [r.artifact for r in recs if r.WhichOneof("record_type") == "artifact"]
    return {"run": runs[0], "configs": configs, "history": history, "artifacts": artifacts}
