"""Reading call recordings (16-bit PCM WAV) with clear, one-line errors.

Samples are int16 numpy arrays. A two-leg call recording is stereo with the caller
on the left channel and the agent on the right; per-leg recordings are mono.
Also: duration, band-limited resampling and a simple energy-based voice detector.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]

ASR_RATE = 16000  # the rate the Vosk small Mandarin model was trained on


class AudioError(ValueError):
    """The audio file cannot be used; the message is a one-line reason."""


def read_wav(path: str | Path) -> tuple[npt.NDArray[np.int16], int]:
    """All channels of a 16-bit PCM WAV: (samples shaped (frames, channels), rate)."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if not p.is_file():
        raise AudioError(f"{p}: not a regular file")
    try:
        with p.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise AudioError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    if len(head) < 12:
        if head[:4] == b"RIFF":
            raise AudioError(f"{p}: corrupt WAV header (file is only {len(head)} bytes)")
        raise AudioError(f"{p}: not a WAV file ({len(head)} bytes)")
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioError(f"{p}: not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(str(p), "rb") as wf:
            channels = wf.getnchannels()
            width = wf.getsampwidth()
            rate = wf.getframerate()
            nframes = wf.getnframes()
            data = wf.readframes(nframes)
    except wave.Error as exc:
        msg = str(exc)
        if msg.startswith("unknown format"):
            raise AudioError(f"{p}: unsupported WAV encoding ({msg}); need 16-bit PCM") from exc
        raise AudioError(f"{p}: corrupt WAV header ({msg})") from exc
    except EOFError as exc:
        raise AudioError(f"{p}: corrupt WAV header (file ends inside the header)") from exc
    except OSError as exc:
        raise AudioError(f"{p}: cannot read: {exc}") from exc
    if width != 2:
        raise AudioError(f"{p}: unsupported sample width {width * 8} bits; need 16-bit PCM")
    if channels < 1:
        raise AudioError(f"{p}: corrupt WAV header (0 channels)")
    if rate <= 0:
        raise AudioError(f"{p}: corrupt WAV header (sample rate {rate})")
    frame_bytes = channels * width
    usable = len(data) - len(data) % frame_bytes
    if usable == 0:
        raise AudioError(f"{p}: empty audio (0 frames)")
    samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
    return samples.reshape(-1, channels), rate


def read_mono(path: str | Path) -> tuple[Int16Array, int]:
    """A mono signal and its rate; a multi-channel file is mixed down (averaged)."""
    frames, rate = read_wav(path)
    if frames.shape[1] == 1:
        return np.ascontiguousarray(frames[:, 0]), rate
    mixed = np.round(frames.astype(np.float64).mean(axis=1))
    return mixed.astype(np.int16), rate


def read_stereo_legs(path: str | Path) -> tuple[Int16Array, Int16Array, int]:
    """(caller = left channel, agent = right channel, rate) of a stereo call recording."""
    frames, rate = read_wav(path)
    if frames.shape[1] != 2:
        raise AudioError(f"{path}: expected a stereo (2-channel) call, got {frames.shape[1]}")
    return np.ascontiguousarray(frames[:, 0]), np.ascontiguousarray(frames[:, 1]), rate


def write_wav(path: str | Path, samples: npt.NDArray[np.int16], rate: int) -> None:
    """Write int16 samples, mono (1-D) or shaped (frames, channels), as PCM WAV."""
    arr = np.asarray(samples, dtype=np.int16)
    channels = 1 if arr.ndim == 1 else arr.shape[1]
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(arr.astype("<i2").tobytes())


def duration(samples: npt.NDArray[np.int16], rate: int) -> float:
    """Length in seconds of a signal (frames along the first axis)."""
    return len(samples) / float(rate)


def wav_duration(path: str | Path) -> float:
    """Length in seconds of a WAV file, from its header (the data is not read)."""
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as wf:
            return wf.getnframes() / float(wf.getframerate())
    except FileNotFoundError as exc:
        raise AudioError(f"{p}: no such file") from exc
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{p}: not a readable WAV file ({exc or 'truncated'})") from exc


def resample(samples: npt.NDArray[np.int16], src_rate: int, dst_rate: int) -> Int16Array:
    """Band-limited (FFT) resampling of a mono int16 signal.

    Exact for the 8 kHz -> 16 kHz telephone case; the end wraps slightly (circular),
    which does not matter for the silence-padded recordings here.
    """
    if src_rate == dst_rate:
        return np.asarray(samples, dtype=np.int16)
    x = np.asarray(samples, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int16)
    m = max(1, round(n * dst_rate / src_rate))
    spectrum = np.fft.rfft(x)
    keep = min(len(spectrum), m // 2 + 1)
    out_spec = np.zeros(m // 2 + 1, dtype=np.complex128)
    out_spec[:keep] = spectrum[:keep]
    y = np.fft.irfft(out_spec, m) * (m / n)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def frame_rms_db(samples: npt.NDArray[np.int16], rate: int, frame_s: float = 0.02) -> npt.NDArray:
    """RMS level (dBFS) of consecutive non-overlapping frames."""
    size = max(1, int(rate * frame_s))
    count = len(samples) // size
    if count == 0:
        return np.zeros(0)
    x = np.asarray(samples[: count * size], dtype=np.float64).reshape(count, size)
    rms = np.sqrt(np.mean(x * x, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-3) / 32768.0)


def speech_level(samples: npt.NDArray[np.int16], rate: int) -> tuple[float, float] | None:
    """(speech level in dBFS, how far it stands above the line noise in dB) of one
    leg, or None when the leg is silent. Speech is the 95th percentile of 20 ms
    frame levels (the loud frames of what was said), noise the 10th (a recorded
    leg is mostly the line while the other side talks)."""
    levels = frame_rms_db(samples, rate)
    if len(levels) == 0:
        return None
    speech, noise = (float(x) for x in np.percentile(levels, [95, 10]))
    if speech < SILENT_DBFS:
        return None
    return round(speech, 1), round(speech - noise, 1)


SILENT_DBFS = -55.0


def voiced_regions(
    samples: npt.NDArray[np.int16],
    rate: int,
    *,
    frame_s: float = 0.02,
    margin_db: float = 15.0,
    min_level_db: float = -55.0,
    min_speech_s: float = 0.08,
    merge_gap_s: float = 0.4,
    pad_s: float = 0.2,
) -> list[tuple[float, float]]:
    """Spans (start, end) in seconds where the signal is louder than its noise floor.

    The floor is the 10th percentile of frame levels; a frame is voiced when it is
    ``margin_db`` above the floor and above ``min_level_db``. Runs shorter than
    ``min_speech_s`` are dropped, gaps shorter than ``merge_gap_s`` are bridged and
    each span is padded by ``pad_s`` (clipped to the signal).
    """
    levels = frame_rms_db(samples, rate, frame_s)
    if len(levels) == 0:
        return []
    floor = float(np.percentile(levels, 10))
    voiced = levels > max(floor + margin_db, min_level_db)
    spans: list[tuple[float, float]] = []
    start: int | None = None
    for i, v in enumerate(np.append(voiced, False)):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if (i - start) * frame_s >= min_speech_s:
                spans.append((start * frame_s, i * frame_s))
            start = None
    total = duration(samples, rate)
    padded = [(max(0.0, s - pad_s), min(total, e + pad_s)) for s, e in spans]
    merged: list[tuple[float, float]] = []
    for s, e in padded:
        if merged and s - merged[-1][1] < merge_gap_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return [(round(s, 3), round(e, 3)) for s, e in merged]


def is_silent(samples: npt.NDArray[np.int16], rate: int, threshold_db: float = -55.0) -> bool:
    """True when no 20 ms frame is louder than ``threshold_db`` dBFS."""
    levels = frame_rms_db(samples, rate)
    return bool(len(levels) == 0 or levels.max() <= threshold_db)
