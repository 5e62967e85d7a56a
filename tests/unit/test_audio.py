"""Reading WAV input: clear errors, stereo split, resampling and voice detection."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from callcenter.audio import (
    AudioError,
    duration,
    is_silent,
    read_mono,
    read_stereo_legs,
    read_wav,
    resample,
    wav_duration,
    write_wav,
)


def _tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _write(path: Path, frames: np.ndarray, rate: int = 8000, width: int = 2) -> Path:
    channels = 1 if frames.ndim == 1 else frames.shape[1]
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(width)
        wf.setframerate(rate)
        wf.writeframes(frames.tobytes())
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        read_mono(tmp_path / "nope.wav")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not a regular file"):
        read_mono(tmp_path)


def test_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"ID3\x03\x00 this is an mp3, honestly" * 4)
    with pytest.raises(AudioError, match="not a WAV file"):
        read_mono(path)


def test_tiny_file_is_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"abc")
    with pytest.raises(AudioError, match="not a WAV file"):
        read_mono(path)


def test_zero_frames(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16))
    with pytest.raises(AudioError, match="empty audio"):
        read_mono(path)


def test_truncated_header(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.wav", _tone(0.5, 8000))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(good.read_bytes()[:30])  # inside the fmt chunk
    with pytest.raises(AudioError, match="corrupt WAV header"):
        read_mono(bad)


def test_unsupported_sample_width(tmp_path: Path) -> None:
    path = _write(tmp_path / "u8.wav", np.full(800, 128, dtype=np.uint8), width=1)
    with pytest.raises(AudioError, match="unsupported sample width 8 bits"):
        read_mono(path)


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError) as info:
        read_mono(path)
    assert "\n" not in str(info.value)


def test_truncated_data_keeps_whole_frames(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.wav", _tone(0.5, 8000))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:-1001])  # header claims more than is there
    samples, rate = read_mono(cut)
    assert rate == 8000
    assert 0 < len(samples) < 4000


def test_mono_roundtrip(tmp_path: Path) -> None:
    tone = _tone(1.0, 8000)
    samples, rate = read_mono(_write(tmp_path / "m.wav", tone))
    assert rate == 8000
    assert samples.dtype == np.int16
    np.testing.assert_array_equal(samples, tone)
    assert duration(samples, rate) == pytest.approx(1.0)
    assert wav_duration(tmp_path / "m.wav") == pytest.approx(1.0)


def test_stereo_split_left_is_caller(tmp_path: Path) -> None:
    caller = _tone(0.5, 8000, 300)
    agent = np.zeros_like(caller)
    agent[100:200] = 1234
    path = _write(tmp_path / "s.wav", np.stack([caller, agent], axis=1))
    left, right, rate = read_stereo_legs(path)
    assert rate == 8000
    np.testing.assert_array_equal(left, caller)
    np.testing.assert_array_equal(right, agent)
    frames, _ = read_wav(path)
    assert frames.shape == (4000, 2)
    mixed, _ = read_mono(path)
    assert mixed[150] == round((caller[150] + 1234) / 2)


def test_stereo_needs_two_channels(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.wav", _tone(0.2, 8000))
    with pytest.raises(AudioError, match="expected a stereo"):
        read_stereo_legs(path)


def test_write_wav_roundtrip(tmp_path: Path) -> None:
    tone = _tone(0.3, 16000)
    write_wav(tmp_path / "w.wav", tone, 16000)
    samples, rate = read_mono(tmp_path / "w.wav")
    assert rate == 16000
    np.testing.assert_array_equal(samples, tone)


def test_resample_8k_to_16k_keeps_a_tone() -> None:
    tone8 = _tone(1.0, 8000, 1000)
    up = resample(tone8, 8000, 16000)
    assert len(up) == 16000
    np.testing.assert_allclose(up.astype(float), _tone(1.0, 16000, 1000), atol=3)
    back = resample(up, 16000, 8000)
    np.testing.assert_allclose(back.astype(float), tone8, atol=3)
    assert resample(tone8, 8000, 8000) is not None


def test_line_noise_is_silent_and_a_tone_in_it_is_not() -> None:
    rate = 8000
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, 5 * rate).astype(np.int16)  # line-noise floor
    x[rate : 2 * rate] += _tone(1.0, rate)
    x[3 * rate : int(3.5 * rate)] += _tone(0.5, rate)
    assert not is_silent(x, rate)
    assert is_silent(rng.normal(0, 3, rate).astype(np.int16), rate)


def _g711_wav(path: Path, codes: bytes, tag: int, rate: int = 8000, channels: int = 1) -> None:
    """A WAV whose samples are G.711 bytes (format 6 a-law, 7 u-law), with a 'fact'
    chunk before 'data' as recorders write it."""
    import struct

    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels, channels, 8)
    fact = struct.pack("<I", len(codes) // channels)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<I", len(fact)) + fact
            + b"data" + struct.pack("<I", len(codes)) + codes)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_g711_recordings_in_wav_and_asterisks_raw_formats(tmp_path: Path) -> None:
    from callcenter.audio import read_mono, read_stereo_legs, ulaw_encode

    rate = 8000
    tone = (np.sin(np.arange(rate) / rate * 2 * np.pi * 440) * 16000).astype(np.int16)
    ulaw = ulaw_encode(tone)
    _g711_wav(tmp_path / "u.wav", ulaw, tag=7)
    (tmp_path / "u.ulaw").write_bytes(ulaw)
    for name in ("u.wav", "u.ulaw"):
        samples, got_rate = read_mono(tmp_path / name)
        assert got_rate == rate and len(samples) == len(tone)
        assert np.max(np.abs(samples.astype(int) - tone)) < 600  # one quantisation step
    # a-law: 0xD5/0x55 are +8/-8, 0xAA/0x2A the extremes (ITU-T G.711 tables).
    _g711_wav(tmp_path / "a.wav", bytes([0xD5, 0x55, 0xAA, 0x2A]), tag=6)
    (tmp_path / "a.alaw").write_bytes(bytes([0xD5, 0x55, 0xAA, 0x2A]))
    for name in ("a.wav", "a.alaw"):
        assert read_mono(tmp_path / name)[0].tolist() == [8, -8, 32256, -32256]
    # A stereo u-law call: caller left, agent right.
    _g711_wav(tmp_path / "st.wav", bytes([0xFF, 0x00] * 4), tag=7, channels=2)
    caller, agent, _ = read_stereo_legs(tmp_path / "st.wav")
    assert caller.tolist() == [0] * 4 and agent.tolist() == [-32124] * 4
    # Asterisk's signed linear: .sln at 8 kHz, .sln16 at 16 kHz.
    (tmp_path / "x.sln16").write_bytes(tone.astype("<i2").tobytes())
    samples, got_rate = read_mono(tmp_path / "x.sln16")
    assert got_rate == 16000 and samples.tolist() == tone.tolist()


def test_broken_g711_files_fail_with_a_reason(tmp_path: Path) -> None:
    from callcenter.audio import AudioError, read_mono

    _g711_wav(tmp_path / "empty.wav", b"", tag=7)
    with pytest.raises(AudioError, match="empty audio"):
        read_mono(tmp_path / "empty.wav")
    (tmp_path / "empty.ulaw").write_bytes(b"")
    with pytest.raises(AudioError, match="empty audio"):
        read_mono(tmp_path / "empty.ulaw")
    wav = tmp_path / "bits.wav"
    _g711_wav(wav, b"\x00" * 8, tag=7)
    data = bytearray(wav.read_bytes())
    data[34:36] = (16).to_bytes(2, "little")  # 16 bits per G.711 sample: not G.711
    wav.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"corrupt G\.711"):
        read_mono(wav)
