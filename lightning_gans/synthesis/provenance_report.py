"""What a generated image or video can prove about itself: the report `lightning-gans provenance` prints.

Per file: the C2PA manifest (present / valid / signer: signed, bound to the pixels), the watermark
in the pixels (found / payload: survives re-encodes), and the metadata we write as PNG text chunks /
comment tags / sidecars. That metadata is unsigned: anyone can edit it, so it is shown as a claim,
and a `synthetic` field that says anything but true is flagged when the manifest or watermark says
otherwise. Every value is printed escaped (repr-style) so that terminal control codes hidden in a
text chunk never reach the terminal raw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import content_credentials, watermark
from .video import file_provenance

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")


def safe_text(value: object, limit: int = 500) -> str:
    """Printable form of untrusted text: control and non-printable characters escaped, length capped."""
    text = str(value)
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if len(out) <= limit else out[:limit] + f"... ({len(out) - limit} more characters)"


def _first_frame(path: Path) -> np.ndarray | None:
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        if suffix in VIDEO_SUFFIXES:
            import imageio.v2 as imageio  # the `video` extra; without it videos are not read

            with imageio.get_reader(path) as reader:
                return np.asarray(reader.get_data(0))
    except (UnidentifiedImageError, OSError, ImportError, RuntimeError, ValueError, IndexError):
        return None
    return None


def read_watermark(path: Path) -> dict:
    """{"found", "payload"} of an image's pixels (a video's first frame); not found for other files."""
    frame = _first_frame(path)
    if frame is None:
        return {"found": False, "payload": None, "confidence": 0.0}
    return watermark.detect(frame).as_dict()


def report(path: str) -> dict:
    """Everything `provenance` says about one file, as the --json object."""
    p = Path(path)
    c2pa = content_credentials.read(p)
    meta = file_provenance(p)
    wm = read_watermark(p)
    claims_synthetic = meta.get("synthetic", "").strip().lower() == "true"
    evidence = (c2pa["valid"] and (c2pa.get("assertion") or {}).get("synthetic") == "true") or wm["found"]
    warnings = []
    if meta and not claims_synthetic and evidence:
        warnings.append("the unsigned metadata says synthetic="
                        f"{safe_text(meta.get('synthetic', '(missing)'))}, but the signed manifest or the "
                        "watermark says this image was generated: the metadata was edited")
    if c2pa["present"] and not c2pa["valid"]:
        warnings.append("the C2PA manifest does not match this file (pixels or manifest changed after signing)")
    return {"file": path, "c2pa": {"present": c2pa["present"], "valid": c2pa["valid"], "signer": c2pa["signer"],
                                   "errors": c2pa["errors"]},
            "watermark": wm, "metadata": meta, "metadata_signed": False, "warnings": warnings}


def print_text(r: dict) -> None:
    c, wm, meta = r["c2pa"], r["watermark"], r["metadata"]
    if not (meta or c["present"] or wm["found"]):
        print(f"{safe_text(r['file'])}: NO provenance metadata (not written by lightning-gans, or stripped "
              "since); no C2PA manifest, no watermark found")
        return
    print(f"{safe_text(r['file'])}:")
    if c["present"]:
        state = "valid (matches the file)" if c["valid"] else "INVALID: " + ", ".join(safe_text(e) for e in c["errors"])
        print(f"  C2PA manifest: {state}; signer: {safe_text(c['signer'])}")
        if c["valid"] and "test" in str(c["signer"]).lower():
            print("    (a per-installation test certificate: proves the pixels are unchanged, not who made them)")
    else:
        print("  C2PA manifest: none")
    print(f"  watermark: {'found, payload ' + safe_text(wm['payload']) if wm['found'] else 'not found'}")
    if meta:
        print("  metadata (unsigned text chunks / sidecar: a claim anyone can edit):")
        width = max(len(safe_text(k)) for k in meta)
        for k in sorted(meta):
            print(f"    {safe_text(k):{width}s}  {safe_text(meta[k])}")
    else:
        print("  metadata: none (stripped since, or never written)")
    for w in r["warnings"]:
        print(f"  WARNING: {w}")
