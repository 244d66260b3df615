"""The checkpoint writer and reader: atomic replacement, safe loading, clear errors."""

import os
import pickle

import pytest
import torch

from lightning_gans.checkpoint import atomic_save, safe_load
from lightning_gans.errors import CheckpointError


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("simulated crash in the middle of writing")


def test_failed_write_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        atomic_save({"step": 2, "w": torch.zeros(1000), "bad": Unpicklable()}, path)
    assert safe_load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temp file left behind


def test_killed_writer_leaves_old_file(tmp_path):
    """A writer killed with SIGKILL mid-write leaves the previous file untouched."""
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "last.ckpt"
    atomic_save({"step": 1}, path)
    code = (
        "import torch, sys; from lightning_gans.checkpoint import atomic_save\n"
        "class Slow:\n"
        "    def __reduce__(self):\n"
        "        import time; print('writing', flush=True); time.sleep(60); return (int, (0,))\n"
        f"atomic_save({{'step': 2, 'big': torch.zeros(10**6), 'slow': Slow()}}, {str(path)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert safe_load(path)["step"] == 1


def test_safe_load_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        torch.save({"state_dict": {}, "x": Evil()}, f)
    with pytest.raises(CheckpointError, match="refuses"):
        safe_load(path)
    assert not marker.exists()


def test_safe_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        safe_load(tmp_path / "missing.ckpt")
    (tmp_path / "trunc.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        safe_load(tmp_path / "trunc.ckpt")
    atomic_save([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        safe_load(tmp_path / "list.ckpt")
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"a": 1}, f)
    with pytest.raises(CheckpointError):
        safe_load(tmp_path / "plain.pkl")
