"""Making images with trained models: generate, style-mix, interpolate, project, transfer; all with provenance."""

from .generate import generate
from .images import read_provenance
from .interpolate import interpolate
from .load import LoadedGenerator, load_generator
from .project import ProjectSchedule, project
from .style_interp import interpolate_styles
from .stylemix import style_mix
from .transfer import LoadedStarGAN, load_stargan, transfer
from .video import file_provenance

__all__ = ["LoadedGenerator", "LoadedStarGAN", "ProjectSchedule", "file_provenance", "generate", "interpolate",
           "interpolate_styles", "load_generator", "load_stargan", "project", "read_provenance", "style_mix",
           "transfer"]
