"""Import official StyleGAN2-ADA / rosinality / StarGAN v2 checkpoints into our models, export ours back."""

from .convert import Imported, export_official, load_official, read, to_checkpoint
from .safe_pickle import PersistentRecord, load_network_pickle, safe_unpickle

__all__ = [
    "Imported", "PersistentRecord", "export_official", "load_network_pickle", "load_official", "read",
    "safe_unpickle", "to_checkpoint",
]
