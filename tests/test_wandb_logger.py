"""The W&B logger of the default config survives the end of its service process (wandb-core),
which a SIGTERM to the job step ends too: logging stops with one warning instead of an exception
in the middle of a training step (callbacks/wandb_logger.py). One process per logger: the
service is one per process and does not come back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("wandb")

SCRIPT = r'''
import json, logging, os, signal, sys, time
which, save_dir = sys.argv[1], sys.argv[2]
if which == "lightning":
    from pytorch_lightning.loggers import WandbLogger
else:
    from lightning_gans.callbacks.wandb_logger import WandbLogger
warnings = []
class Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("lightning_gans").addHandler(Keep(logging.WARNING))
logger = WandbLogger(save_dir=save_dir, offline=True, project="t")
logger.log_metrics({"loss": 0.0}, step=0)  # starts the run and its service
killed = []  # SIGTERM this process's wandb-core, as Slurm's SIGTERM to the job step does
for entry in filter(str.isdigit, os.listdir("/proc")):
    try:
        comm, rest = open(f"/proc/{entry}/stat").read().split("(", 1)[1].rsplit(")", 1)
    except OSError:
        continue
    if int(rest.split()[1]) == os.getpid() and "wandb" in comm:
        os.kill(int(entry), signal.SIGTERM)
        killed.append(int(entry))
time.sleep(1.0)
raised = None
for i in range(1, 50):
    try:
        logger.log_metrics({"loss": float(i)}, step=i)
    except BaseException as e:
        raised = type(e).__name__
        break
if raised is None:
    logger.log_hyperparams({"lr": 0.002})
    logger.finalize("success")
print(json.dumps({"killed": killed, "raised": raised, "lost": getattr(logger, "service_lost", None),
                  "warnings": [w for w in warnings if "W&B logging stops" in w]}))
'''


def _run(which: str, tmp_path) -> dict:
    # No WANDB_* of this process: a W&B run started here (another test) leaves WANDB_SERVICE
    # set, through which the child would use this process's service instead of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_SILENT="true", WANDB_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", SCRIPT, which, str(tmp_path / which)], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_lost_service_stops_logging_with_a_warning(tmp_path):
    plain = _run("lightning", tmp_path)  # the premise: Lightning's own logger raises
    assert plain["killed"] and plain["raised"] == "ConnectionResetError", plain
    ours = _run("ours", tmp_path)
    assert ours["killed"] and ours["raised"] is None and ours["lost"] is True, ours
    assert len(ours["warnings"]) == 1, ours
