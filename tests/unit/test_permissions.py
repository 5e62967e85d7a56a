"""Recordings are never readable by other users: the folder is 0750 (made so, or
tightened when it existed wider), and the service's umask is 027."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter.permissions import (
    RECORDINGS_DIR_MODE,
    SERVICE_UMASK,
    prepare_recordings_dir,
    restrict_umask,
)
from callcenter.sandbox.asterisk import process_umask


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_kept() -> Iterator[None]:
    """The tests change this process's umask: give the previous one back."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def test_a_new_recordings_folder_is_0750_whatever_the_umask(
    tmp_path: Path, umask_kept: None
) -> None:
    os.umask(0o000)  # would make it 0777
    folder = prepare_recordings_dir(tmp_path / "data" / "recordings")
    assert folder.is_dir() and mode(folder) == RECORDINGS_DIR_MODE == 0o750


def test_an_existing_wider_folder_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    folder.chmod(0o777)
    (folder / "keep.wav").write_bytes(b"RIFF")
    prepare_recordings_dir(folder)
    assert mode(folder) == 0o750
    assert (folder / "keep.wav").read_bytes() == b"RIFF"  # contents untouched


@pytest.mark.parametrize(("before", "after"), [(0o700, 0o700), (0o2775, 0o2750),
                                               (0o755, 0o750), (0o750, 0o750)])
def test_a_narrower_folder_or_its_special_bits_stay(
    tmp_path: Path, before: int, after: int
) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    folder.chmod(before)
    prepare_recordings_dir(folder)
    assert mode(folder) == after


def test_a_folder_that_cannot_be_made_is_an_os_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        prepare_recordings_dir(blocker / "recordings")


def test_the_service_umask_leaves_nothing_for_others(tmp_path: Path, umask_kept: None) -> None:
    os.umask(0o022)
    assert restrict_umask() == 0o022
    assert process_umask(os.getpid()) == SERVICE_UMASK == 0o027
    (tmp_path / "rec.wav").write_bytes(b"RIFF")
    (tmp_path / "call").mkdir()
    assert mode(tmp_path / "rec.wav") == 0o640 and mode(tmp_path / "call") == 0o750
    os.umask(0o077)  # a stricter umask is kept
    restrict_umask()
    assert process_umask(os.getpid()) == 0o077
