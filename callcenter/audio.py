"""Reading call recordings with clear, one-line errors: WAV (16-bit PCM, or G.711
u-law/a-law as some recorders write it), and Asterisk's raw formats by extension
(``.ulaw``/``.pcmu``, ``.alaw``/``.pcma``: 8 kHz; ``.sln``: 8 kHz 16-bit,
``.sln16``: 16 kHz 16-bit).

Samples are int16 numpy arrays. A two-leg call recording is stereo with the caller
on the left channel and the agent on the right; per-leg recordings are mono.
Also: duration, band-limited resampling and frame levels (speech is found by
``asr/vad.py``).
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]

ASR_RATE = 16000  # the rate the Vosk small Mandarin model was trained on


class AudioError(ValueError):
    """The audio file cannot be used; the message is a one-line reason."""


def read_wav(path: str | Path) -> tuple[npt.NDArray[np.int16], int]:
    """All channels of a recording: (samples shaped (frames, channels), rate)."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if not p.is_file():
        raise AudioError(f"{p}: not a regular file")
    raw = RAW_FORMATS.get(p.suffix.lower())
    if raw is not None:
        return _read_raw(p, *raw)
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
        if msg in (f"unknown format: {WAVE_FORMAT_ALAW}", f"unknown format: {WAVE_FORMAT_MULAW}"):
            return _read_g711_wav(p)
        if msg.startswith("unknown format"):
            raise AudioError(f"{p}: unsupported WAV encoding ({msg}); need 16-bit PCM or "
                             "G.711") from exc
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


WAVE_FORMAT_ALAW, WAVE_FORMAT_MULAW = 6, 7
# Asterisk's headerless formats: extension -> (encoding, rate).
RAW_FORMATS = {".ulaw": ("ulaw", 8000), ".ul": ("ulaw", 8000), ".pcmu": ("ulaw", 8000),
               ".alaw": ("alaw", 8000), ".al": ("alaw", 8000), ".pcma": ("alaw", 8000),
               ".sln": ("slin", 8000), ".raw": ("slin", 8000), ".sln16": ("slin", 16000)}


def _read_raw(p: Path, encoding: str, rate: int) -> tuple[npt.NDArray[np.int16], int]:
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise AudioError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    samples = _decode(data, encoding)
    if len(samples) == 0:
        raise AudioError(f"{p}: empty audio (0 frames)")
    return samples.reshape(-1, 1), rate


def _decode(data: bytes, encoding: str) -> Int16Array:
    if encoding == "slin":
        return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)
    table = _ULAW_TABLE if encoding == "ulaw" else _ALAW_TABLE
    return table[np.frombuffer(data, dtype=np.uint8)]


def _read_g711_wav(p: Path) -> tuple[npt.NDArray[np.int16], int]:
    """A WAV whose samples are G.711 bytes (format 6 or 7), which ``wave`` refuses."""
    data = p.read_bytes()
    fmt: tuple[int, int, int, int] | None = None
    samples = b""
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        body = data[at + 8:at + 8 + size]
        if kind == b"fmt " and len(body) >= 16:
            tag, channels, rate, _bytes_per_s, _align, bits = struct.unpack_from("<HHIIHH", body)
            fmt = (tag, channels, rate, bits)
        elif kind == b"data":
            samples = body
            break
        at += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise AudioError(f"{p}: corrupt WAV header (no fmt chunk)")
    tag, channels, rate, bits = fmt
    if bits != 8 or channels < 1 or rate <= 0:
        raise AudioError(f"{p}: corrupt G.711 WAV header ({bits} bits, {channels} channels, "
                         f"{rate} Hz)")
    usable = len(samples) - len(samples) % channels
    if usable == 0:
        raise AudioError(f"{p}: empty audio (0 frames)")
    decoded = _decode(samples[:usable], "ulaw" if tag == WAVE_FORMAT_MULAW else "alaw")
    return decoded.reshape(-1, channels), rate


def _g711_tables() -> tuple[Int16Array, Int16Array]:
    """Linear values of the 256 u-law and a-law codes (ITU-T G.711, as Sun's g711.c)."""
    codes = np.arange(256, dtype=np.int32)
    u = ~codes & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    ulaw = np.where(u & 0x80, 0x84 - t, t - 0x84)
    a = codes ^ 0x55
    segment = (a & 0x70) >> 4
    base = (a & 0x0F) << 4
    magnitude = np.where(segment == 0, base + 8,
                         (base + 0x108) << np.maximum(segment - 1, 0))
    alaw = np.where(a & 0x80, magnitude, -magnitude)
    return ulaw.astype(np.int16), alaw.astype(np.int16)


_ULAW_TABLE, _ALAW_TABLE = _g711_tables()


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
    y = resample_signal(np.asarray(samples, dtype=np.float64), src_rate, dst_rate)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def resample_signal(x: npt.NDArray[np.float64], src_rate: int, dst_rate: int
                    ) -> npt.NDArray[np.float64]:
    """Band-limited (FFT) resampling of a mono float signal, without rounding or
    clipping (the prompt renderer normalises afterwards); circular like ``resample``."""
    n = len(x)
    if n == 0 or src_rate == dst_rate:
        return np.array(x, dtype=np.float64)
    m = max(1, round(n * dst_rate / src_rate))
    spectrum = np.fft.rfft(x)
    keep = min(len(spectrum), m // 2 + 1)
    out_spec = np.zeros(m // 2 + 1, dtype=np.complex128)
    out_spec[:keep] = spectrum[:keep]
    return np.fft.irfft(out_spec, m) * (m / n)


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


def is_silent(samples: npt.NDArray[np.int16], rate: int, threshold_db: float = -55.0) -> bool:
    """True when no 20 ms frame is louder than ``threshold_db`` dBFS."""
    levels = frame_rms_db(samples, rate)
    return bool(len(levels) == 0 or levels.max() <= threshold_db)


# ---- telephone prompts (callcenter/prompts.py) ------------------------------------

TELEPHONE_RATE = 8000  # narrowband: what Asterisk's .wav (slin) and .ulaw sounds hold
# Silence added around a signal while resampling it: the FFT resampler is circular,
# and this keeps a prompt's end from ringing into its start.
RESAMPLE_PAD_S = 0.05
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def read_pcm_mono(path: str | Path) -> tuple[npt.NDArray[np.float64], int]:
    """Any integer PCM WAV (8, 16, 24 or 32-bit, any channels) as a mono float
    signal in [-1, 1] (channels averaged) and its rate."""
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as wf:
            width, channels, rate = wf.getsampwidth(), wf.getnchannels(), wf.getframerate()
            data = wf.readframes(wf.getnframes())
    except FileNotFoundError as exc:
        raise AudioError(f"{p}: no such file") from exc
    except (wave.Error, EOFError) as exc:  # float and extensible WAVs too (Python 3.11)
        raise AudioError(f"{p}: not an integer PCM WAV ({exc or 'truncated'}); use 8, 16, "
                         "24 or 32-bit PCM") from exc
    if rate <= 0 or channels < 1 or width not in (1, 2, 3, 4):
        raise AudioError(f"{p}: unsupported WAV ({width * 8}-bit, {channels} channels, "
                         f"{rate} Hz)")
    usable = len(data) - len(data) % (width * channels)
    if usable == 0:
        raise AudioError(f"{p}: empty audio (0 frames)")
    samples = _pcm_to_float(data[:usable], width)
    return samples.reshape(-1, channels).mean(axis=1), rate


def _pcm_to_float(data: bytes, width: int) -> npt.NDArray[np.float64]:
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(data, np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:  # no numpy type: the 3 bytes go to the top of an int32
        triples = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        values = (triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)
        return values.astype(np.float64) / 2.0**31
    dtype = "<i2" if width == 2 else "<i4"
    return np.frombuffer(data, dtype).astype(np.float64) / 2.0 ** (8 * width - 1)


def to_telephone(signal: npt.NDArray[np.float64], rate: int, *,
                 peak_dbfs: float | None = None) -> Int16Array:
    """8 kHz 16-bit samples of a mono float signal in [-1, 1]; with ``peak_dbfs``
    normalised so its loudest sample is there (as ``sox ... gain -n -3``)."""
    pad = np.zeros(round(RESAMPLE_PAD_S * rate))
    resampled = resample_signal(np.concatenate([pad, signal, pad]), rate, TELEPHONE_RATE)
    trim = round(RESAMPLE_PAD_S * TELEPHONE_RATE)
    out = resampled[trim: len(resampled) - trim] if len(resampled) > 2 * trim else resampled
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    if peak_dbfs is not None and peak > 0:
        out = out * (10 ** (peak_dbfs / 20) / peak)
    return np.clip(np.round(out * 32767.0), -32768, 32767).astype(np.int16)


def ulaw_encode(samples: npt.NDArray[np.int16]) -> bytes:
    """G.711 u-law bytes of 16-bit samples, as the reference coder (Sun's g711.c,
    which sox and the former ``audioop`` use): 14-bit magnitude, bias 33, clip 8159."""
    x = np.asarray(samples, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + 0x21
    segment = np.searchsorted(np.array(_ULAW_SEGMENT_ENDS), magnitude)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)  # past the last segment: the loudest code
    return (code ^ mask).astype(np.uint8).tobytes()
