"""``callcenter transcribe`` as a user runs it: text or JSON per file, a stereo call
as two legs, G.711 and raw formats, a broken file reported and the rest done,
whole legs or (``--skip-silence``) only the stretches with speech."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from callcenter.audio import read_mono, ulaw_encode, write_wav
from callcenter.settings import SHARED_DIR

pytestmark = pytest.mark.asr

AGENT = SHARED_DIR / "scenarios" / "dev" / "d007" / "agent.wav"
CALLER = SHARED_DIR / "scenarios" / "dev" / "d007" / "caller.wav"


def _transcribe(*args: str | Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLCENTER_DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "callcenter", "transcribe", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_files_to_json_with_a_broken_one_reported(tmp_path: Path) -> None:
    if not AGENT.is_file():
        pytest.skip("shared scenarios not available")
    agent, rate = read_mono(AGENT)
    caller, _ = read_mono(CALLER)
    seconds = 20 * rate
    write_wav(tmp_path / "call.wav", np.stack([caller[:seconds], agent[:seconds]], axis=1), rate)
    (tmp_path / "agent.ulaw").write_bytes(ulaw_encode(agent[:seconds]))
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    done = _transcribe("--json", tmp_path / "call.wav", tmp_path / "broken.wav",
                       tmp_path / "agent.ulaw", tmp_path=tmp_path)
    assert done.returncode == 1, done.stderr  # one file failed
    call, broken, ulaw = (json.loads(line) for line in done.stdout.splitlines())
    assert set(call["channels"]) == {"caller", "agent"}
    assert call["channels"]["agent"]["text"].startswith("您好")
    first = call["channels"]["agent"]["segments"][0]
    assert 0.3 <= first["start"] <= 1.5 and first["words"][0]["start"] == first["start"]
    assert "not a WAV file" in broken["error"]
    assert "您好" in ulaw["channels"]["mono"]["text"]  # G.711 as Asterisk stores it
    assert abs(ulaw["duration_s"] - 20.0) < 0.01


def test_text_output_and_no_files_is_a_usage_error(tmp_path: Path) -> None:
    if not AGENT.is_file():
        pytest.skip("shared scenarios not available")
    agent, rate = read_mono(AGENT)
    write_wav(tmp_path / "leg.wav", agent[: 8 * rate], rate)
    done = _transcribe(tmp_path / "leg.wav", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'leg.wav'} (8.0 s)"
    assert lines[1].startswith("  [00:00.") and "mono: 您好" in lines[1]
    voiced = _transcribe("--skip-silence", tmp_path / "leg.wav", tmp_path=tmp_path)
    assert voiced.returncode == 0 and "mono: 您好" in voiced.stdout.splitlines()[1], voiced.stderr
    assert _transcribe(tmp_path=tmp_path).returncode == 2
