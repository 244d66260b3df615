"""Making images with trained models: generate, style-mix, interpolate, project, transfer; all with provenance.

Checkpoints are read and their networks built by lightning_gans.model_file (describe(path).generator()
/ .stargan()); as_generator / as_stargan take a path, a ModelFile or an already built network."""

from ..model_file import LoadedGenerator, LoadedStarGAN
from .generate import as_generator, generate
from .images import read_provenance
from .interpolate import interpolate
from .project import ProjectSchedule, project
from .style_interp import interpolate_styles
from .stylemix import style_mix
from .transfer import as_stargan, transfer
from .video import file_provenance

__all__ = ["LoadedGenerator", "LoadedStarGAN", "ProjectSchedule", "as_generator", "as_stargan", "file_provenance",
           "generate", "interpolate", "interpolate_styles", "project", "read_provenance", "style_mix", "transfer"]
