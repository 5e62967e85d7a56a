"""The decoder search as a model folder (``asr/search.py``): the model's files
linked, only its conf rewritten (the search, no dither), built once and atomically."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from callcenter.asr.search import NARROW, DecoderSearch, model_with_search, with_options

MODEL_CONF = "--min-active=200\n--max-active=5000\n--beam=12.0\n--lattice-beam=4.0\n"
MFCC_CONF = "--use-energy=false\n--sample-frequency=16000\n"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A folder shaped like a Vosk model (the files' contents do not matter here)."""
    folder = tmp_path / "model-x"
    for name in ("am/final.mdl", "graph/HCLr.fst", "ivector/final.ie", "conf/ivector.conf"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    (folder / "conf" / "model.conf").write_text(MODEL_CONF)
    (folder / "conf" / "mfcc.conf").write_text(MFCC_CONF)
    return folder


def test_options_replace_their_lines_and_add_the_missing_ones() -> None:
    text = with_options("--beam=12.0\n--acoustic-scale=1.0\n",
                        {"--beam": "10", "--max-active": "7"})
    assert text == "--beam=10\n--acoustic-scale=1.0\n--max-active=7\n"


def test_a_search_links_the_model_and_rewrites_only_its_conf(model: Path, tmp_path: Path) -> None:
    folder = model_with_search(model, NARROW, tmp_path / "cache")
    assert folder != model and folder.parent == tmp_path / "cache" / "model-searches"
    conf = (folder / "conf" / "model.conf").read_text()
    assert "--beam=10\n" in conf and "--max-active=5000\n" in conf and "--min-active=200" in conf
    assert (model / "conf" / "model.conf").read_text() == MODEL_CONF  # the model untouched
    assert (folder / "conf" / "mfcc.conf").read_text() == MFCC_CONF + "--dither=0\n"
    assert (model / "conf" / "mfcc.conf").read_text() == MFCC_CONF
    for name in ("am/final.mdl", "graph/HCLr.fst", "ivector/final.ie", "conf/ivector.conf"):
        assert (folder / name).read_text() == name
    assert (folder / "am").is_symlink() and (folder / "conf" / "ivector.conf").is_symlink()
    assert oct(folder.stat().st_mode & 0o777) == oct(0o755)


def test_the_models_own_search_keeps_its_conf_and_drops_only_the_dither(
    model: Path, tmp_path: Path
) -> None:
    folder = model_with_search(model, None, tmp_path)
    same = DecoderSearch(max_active=5000, beam=12.0, lattice_beam=4.0)
    assert model_with_search(model, same, tmp_path) == folder != model.resolve()
    assert (folder / "conf" / "model.conf").is_symlink()
    assert "--dither=0\n" in (folder / "conf" / "mfcc.conf").read_text()


def test_a_model_that_already_decodes_so_is_its_own_folder(model: Path, tmp_path: Path) -> None:
    (model / "conf" / "mfcc.conf").write_text(MFCC_CONF + "--dither=0.0\n")
    assert model_with_search(model, None, tmp_path) == model.resolve()
    assert not (tmp_path / "model-searches").exists()


def test_the_models_own_search_needs_no_model_conf(model: Path, tmp_path: Path) -> None:
    (model / "conf" / "model.conf").unlink()
    folder = model_with_search(model, None, tmp_path)
    assert model_with_search(model, None, tmp_path) == folder  # built once
    assert not (folder / "conf" / "model.conf").exists()
    assert "--dither=0\n" in (folder / "conf" / "mfcc.conf").read_text()


def test_features_conf_is_never_added(model: Path, tmp_path: Path) -> None:
    """Vosk picks MFCC or filter-bank features by which conf file exists."""
    (model / "conf" / "mfcc.conf").unlink()
    (model / "conf" / "fbank.conf").write_text("--num-mel-bins=80\n")
    folder = model_with_search(model, NARROW, tmp_path)
    assert not (folder / "conf" / "mfcc.conf").exists()
    assert (folder / "conf" / "fbank.conf").read_text() == "--num-mel-bins=80\n--dither=0\n"


def test_built_once_by_processes_starting_together(model: Path, tmp_path: Path) -> None:
    folders: list[Path] = []
    gate = threading.Barrier(6)

    def build() -> None:
        gate.wait()
        folders.append(model_with_search(model, NARROW, tmp_path))

    threads = [threading.Thread(target=build) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(folders)) == 1
    # Only the finished folder is left: no half-built ones beside it.
    assert list((tmp_path / "model-searches").iterdir()) == folders[:1]


def test_another_search_or_model_conf_is_another_folder(model: Path, tmp_path: Path) -> None:
    first = model_with_search(model, NARROW, tmp_path)
    wider = model_with_search(model, DecoderSearch(5000, 11.0, 4.0), tmp_path)
    (model / "conf" / "model.conf").write_text(MODEL_CONF + "--acoustic-scale=0.9\n")
    changed = model_with_search(model, NARROW, tmp_path)
    assert len({first, wider, changed}) == 3
    assert "--acoustic-scale=0.9" in (changed / "conf" / "model.conf").read_text()
