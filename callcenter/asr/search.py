"""How wide the decoder searches, as a model folder Vosk can load.

Vosk reads its decoder options only from the model's ``conf/model.conf``, and the
small Chinese model ships a wide beam (12) that spends much of the decoding CPU
on hypotheses that never win. ``NARROW`` (beam 10) decoded dev legs with about
40 % more audio per CPU-second at the same error rate on ../shared/realspeech
(bench/asr_throughput.py prints both against the model's own search in the same
run). The lattice beam stays the model's: word confidences come from the
lattice, and the QA rules' confidence thresholds were set on them (a lattice
beam of 2 decoded as fast and as well, but made the recogniser surer of wrong
words: two QA rules failed agents who had passed).

``model_with_search`` gives a folder that is the model with another search: the
model's files linked, only ``conf/model.conf`` rewritten. It lives in the cache
folder (the model's own folder may be read-only) and is built once, atomically,
so processes starting together never see half of one.

The folder also turns off Kaldi's dither (``--dither=0`` in ``conf/mfcc.conf``).
Kaldi adds noise to every frame from the C library's process-wide ``rand()``, so
the same leg decoded twice in one process, or after another leg, gave other
words. The decoder adds the same amount of noise itself, from a generator seeded
alike for every leg (``asr/decoder.DITHER``), so a leg decodes to the same
transcript every time, whatever ran before or beside it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

CONF = Path("conf") / "model.conf"
# The feature options, whichever the model has (Vosk picks its features by which
# of these files exists, so none is ever added).
FEATURES = (Path("conf") / "mfcc.conf", Path("conf") / "fbank.conf")
# Features computed the same on every run (see the module doc).
NO_DITHER = {"--dither": "0"}


@dataclass(frozen=True, slots=True)
class DecoderSearch:
    """Kaldi's search options: hypotheses kept per frame, and how far below the best
    one a hypothesis (``beam``) or a lattice arc (``lattice_beam``) may fall."""

    max_active: int
    beam: float
    lattice_beam: float

    def options(self) -> dict[str, str]:
        return {
            "--max-active": str(self.max_active),
            "--beam": f"{self.beam:g}",
            "--lattice-beam": f"{self.lattice_beam:g}",
        }

    @property
    def tag(self) -> str:
        return f"ma{self.max_active}-b{self.beam:g}-lb{self.lattice_beam:g}"


NARROW = DecoderSearch(max_active=5000, beam=10.0, lattice_beam=4.0)
# Settings.asr_search -> the search (None: the model's own).
SEARCHES: dict[str, DecoderSearch | None] = {"narrow": NARROW, "model": None}

_OPTION = re.compile(r"^(--[a-z-]+)=(.*)$")


def with_options(conf_text: str, options: dict[str, str]) -> str:
    """``conf_text`` with ``options`` set: lines of those options replaced, the
    missing ones added at the end."""
    lines, seen = [], set()
    for line in conf_text.splitlines():
        m = _OPTION.match(line.strip())
        if m and m.group(1) in options:
            seen.add(m.group(1))
            line = f"{m.group(1)}={options[m.group(1)]}"
        lines.append(line)
    lines += [f"{k}={v}" for k, v in options.items() if k not in seen]
    return "\n".join(lines) + "\n"


def conf_options(conf_text: str) -> dict[str, str]:
    """The options a Kaldi conf sets (``--name=value`` lines), by name."""
    return {m.group(1): m.group(2) for line in conf_text.splitlines()
            if (m := _OPTION.match(line.strip()))}


def _has_options(conf_text: str, options: dict[str, str]) -> bool:
    """Whether ``conf_text`` sets every option to the same number already."""
    found = conf_options(conf_text)
    return all(k in found and float(found[k]) == float(v) for k, v in options.items())


def feature_rate(folder: Path) -> int:
    """The sample rate a model folder computes its features at (``--sample-frequency``
    in its features conf; Kaldi's default when it has none)."""
    for conf in FEATURES:
        path = folder / conf
        if path.is_file():
            rate = conf_options(path.read_text(encoding="utf-8")).get("--sample-frequency")
            if rate is not None:
                return int(float(rate))
    return 16000


def model_with_search(model_path: Path, search: DecoderSearch | None, cache_dir: Path) -> Path:
    """A model folder decoding with ``search`` (None: the model's own search) and
    without dither; the model's own folder when it already is one."""
    model_path = Path(model_path).resolve()
    rewrites = _rewrites(model_path, search)
    if not rewrites:
        return model_path
    tag = search.tag if search and CONF.name in rewrites else "own-search"
    wanted = "\n".join(f"{name}\n{text}" for name, text in sorted(rewrites.items()))
    digest = hashlib.sha256(f"{model_path}\n{wanted}".encode()).hexdigest()[:12]
    target = cache_dir / "model-searches" / f"{model_path.name}+{tag}-{digest}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        building.chmod(0o755)  # as readable as the model it links to
        _link_model(model_path, building, rewrites)
        os.rename(building, target)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
        if not target.is_dir():  # not just another process finishing first
            raise
    return target


def _rewrites(model_path: Path, search: DecoderSearch | None) -> dict[str, str]:
    """The conf files (by name) whose text the decoding folder changes, as they
    should read; empty when the model's folder already decodes that way."""
    wanted = {CONF: search.options()} if search else {}
    wanted |= {path: NO_DITHER for path in FEATURES if (model_path / path).is_file()}
    rewrites = {}
    for path, options in wanted.items():
        text = (model_path / path).read_text(encoding="utf-8")
        if not _has_options(text, options):
            rewrites[path.name] = with_options(text, options)
    return rewrites


def _link_model(model_path: Path, folder: Path, rewrites: dict[str, str]) -> None:
    """Every entry of the model linked into ``folder``, except the conf folder,
    whose files are linked but for those in ``rewrites``, written as given there."""
    for entry in model_path.iterdir():
        if entry.name != CONF.parent.name:
            (folder / entry.name).symlink_to(entry)
    conf_dir = folder / CONF.parent
    conf_dir.mkdir()
    for entry in (model_path / CONF.parent).iterdir():
        if entry.name not in rewrites:
            (conf_dir / entry.name).symlink_to(entry)
    for name, text in rewrites.items():
        (conf_dir / name).write_text(text, encoding="utf-8")
