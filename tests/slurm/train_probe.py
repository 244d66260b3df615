"""A callback the Slurm training tests add through Hydra (+callbacks.probe=...): what each rank of
each start of a job saw, written under `out_dir` as start<restart>_rank<rank>.json.

At train start: the process, the step and image count training starts from, the W&B run id, and
the checkpoint Lightning restored (trainer.ckpt_path) with whether the weights and optimizer
state now in memory are exactly that checkpoint's -- checked here, before this start saves
anything that could overwrite the file. After `mark_step` steps: start<restart>_rank<rank>.running
(training is under way, Lightning's signal handlers are installed). At train end: the steps run
and the samples drawn.
"""

import json
import os
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_gans.checkpoint import safe_load


def state_mismatch(saved: dict, module: pl.LightningModule, optimizers: list) -> str | None:
    """None when the module's weights and the optimizers' state equal checkpoint `saved`'s
    exactly, else what differs."""
    sd = module.state_dict()
    if sd.keys() != saved["state_dict"].keys():
        return "state_dict keys"
    for k, v in saved["state_dict"].items():
        if not torch.equal(sd[k], v):
            return f"weight {k}"
    if len(optimizers) != len(saved["optimizer_states"]):
        return "optimizer count"
    for i, (opt, ref) in enumerate(zip(optimizers, saved["optimizer_states"])):
        cur = opt.state_dict()
        if not ref["state"] or cur["state"].keys() != ref["state"].keys():
            return f"optimizer {i} state keys"
        for pid, st in ref["state"].items():  # Adam's step, exp_avg, exp_avg_sq per parameter
            if not all(torch.equal(cur["state"][pid][k], v) for k, v in st.items()):
                return f"optimizer {i} param {pid}"
        if cur["param_groups"] != ref["param_groups"]:
            return f"optimizer {i} param groups"
    return None


class Probe(pl.Callback):
    def __init__(self, out_dir: str, mark_step: int = 3):
        self.out_dir = Path(out_dir)
        self.mark_step = mark_step
        self.record: dict = {}

    def _path(self, trainer, suffix: str) -> Path:
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        return self.out_dir / f"start{restart}_rank{trainer.global_rank}{suffix}"

    def _write(self, trainer) -> None:
        path = self._path(trainer, ".json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record))
        os.replace(tmp, path)  # the test polls these files: never let it read half of one

    def on_train_start(self, trainer, pl_module):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        wandb = [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]
        self.record = {
            "pid": os.getpid(),
            "rank": trainer.global_rank,
            "world": trainer.world_size,
            "job_id": os.environ.get("SLURM_JOB_ID"),
            "start_step": trainer.global_step,
            "start_nimg": int(pl_module.nimg),
            "wandb_id": wandb[0].version if wandb and trainer.is_global_zero else None,
            "steps": [],
            "samples": [],
        }
        # Lightning has restored weights, optimizers and loops before train start.
        if trainer.ckpt_path:
            saved = safe_load(trainer.ckpt_path)
            self.record.update(resumed_from=str(trainer.ckpt_path), resumed_step=saved["global_step"],
                               state_mismatch=state_mismatch(saved, pl_module, trainer.optimizers))
        self._write(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.record["steps"].append(trainer.global_step)
        self.record["samples"] += [round(float(v), 6) for v in batch["img"].double().flatten(1).sum(1)]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.record["start_step"] + self.mark_step:
            self._path(trainer, ".running").touch()

    def on_train_end(self, trainer, pl_module):
        self.record["end_step"] = trainer.global_step
        self.record["end_nimg"] = int(pl_module.nimg)
        self._write(trainer)
