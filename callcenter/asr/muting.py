"""The muted copy of a recorded leg: the original with silence over every personal
number its transcript held (``pii.py`` finds them and their times), written
beside the original as ``<leg>.muted.wav`` for the roles that may not hear
originals. Written whole or not at all: a reader never sees half a file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from callcenter import pii
from callcenter.audio import read_mono, write_wav

MUTED_SUFFIX = ".muted.wav"


def muted_name(original: str) -> str:
    """``<call>/caller.wav`` -> ``<call>/caller.muted.wav`` (paths as stored: relative
    to the recordings folder, '/'-separated)."""
    path = PurePosixPath(original)
    return str(path.with_name(path.stem + MUTED_SUFFIX))


def write_muted_copy(recordings: Path, original: str, findings: Sequence[pii.Finding]) -> str:
    """Write the muted copy of ``original`` and return its stored path. Raises
    AudioError when the original cannot be read, OSError when the copy cannot be
    written."""
    samples, rate = read_mono(recordings / original)
    target = recordings / muted_name(original)
    partial = target.with_name(f".{target.name}.partial")
    write_wav(partial, pii.muted(samples, rate, findings), rate)
    os.replace(partial, target)
    return muted_name(original)
