"""Making images with trained models: generate, style-mix, interpolate, project; all with provenance."""

from .generate import generate
from .images import read_provenance
from .interpolate import interpolate
from .load import LoadedGenerator, load_generator
from .project import ProjectSchedule, project
from .stylemix import style_mix
from .video import file_provenance

__all__ = ["LoadedGenerator", "ProjectSchedule", "file_provenance", "generate", "interpolate", "load_generator",
           "project", "read_provenance", "style_mix"]
