"""A callback the DDP tests add through Hydra (+callbacks.probe=...): records what each rank saw."""

import json
from pathlib import Path

import pytorch_lightning as pl
import torch


class RecordBatches(pl.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.samples: list[float] = []
        self.batch_sizes: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        img = batch["img"].double()
        self.samples += [round(float(v), 6) for v in img.flatten(1).sum(1)]
        self.batch_sizes.append(int(img.shape[0]))

    def on_train_end(self, trainer, pl_module):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        G = pl_module.G
        record = {
            "rank": trainer.global_rank,
            "world": trainer.world_size,
            "samples": self.samples,
            "batch_sizes": self.batch_sizes,
            "G_checksum": float(sum(p.double().sum() for p in G.parameters())),
            "D_checksum": float(sum(p.double().sum() for p in pl_module.D.parameters())),
            "w_avg": float(G.mapping.w_avg.double().sum()),
            "nimg": int(pl_module.nimg),
            "global_step": trainer.global_step,
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        torch.save({}, self.out_dir / f"done{trainer.global_rank}")


class RecordNetworks(pl.Callback):
    """For any GAN module: the source images each rank saw and a checksum per network."""

    def __init__(self, out_dir: str, image_key: str = "x_src"):
        self.out_dir = Path(out_dir)
        self.image_key = image_key
        self.samples: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.samples += [round(float(v), 6) for v in batch[self.image_key].double().flatten(1).sum(1)]

    def on_train_end(self, trainer, pl_module):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "world": trainer.world_size,
            "samples": self.samples,
            "checksums": {name: float(sum(p.double().sum() for p in net.parameters()))
                          for name, net in pl_module.networks().items()},
            "global_step": trainer.global_step,
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
