"""SIPp in the Asterisk sandbox: real SIP callers and agent phones.

SIPp (Debian's ``sip-tester``) runs inside the sandbox root, which shares the
host's loopback, with the scenarios of ``callcenter/sandbox/sipp/``:

- ``caller.xml``: a caller on the loopback trunk (source 127.0.0.2, pjsip.conf
  [trunk-loopback]) INVITEs a hotline number, negotiates PCMU, plays real
  G.711 audio with the menu digits as RFC 4733 telephone-events, stays on the
  line a given time (or until the hotline hangs up) and sends BYE;
- ``agent_register.xml`` + ``agent_answer.xml``: one SIPp process registers
  several agent phones (injection file, digest auth) and answers incoming calls
  for all of them, playing the agent's audio until the BYE;
  ``agent_no_answer.xml`` instead: phones that ring and are never picked up;
- ``agent_register_refused.xml``: a registration that must be refused.

Audio: a scenario WAV (any format sox reads) is converted to raw mu-law by sox
inside the root, then packed here into an RTP pcap (``rtp_pcap``) that SIPp's
``play_pcap_audio`` sends with the right timing. Everything goes into a
temporary folder under the root's /tmp, removed by ``close()``; nothing is
written into the repository. Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from callcenter.sandbox.asterisk import SHARED_MOUNT_POINT, AsteriskSandbox

log = logging.getLogger("callcenter.sandbox.sipp")

SCENARIOS = Path(__file__).resolve().parent / "sipp"
ASTERISK_SIP = ("127.0.0.1", 5060)
TRUNK_IP = "127.0.0.2"  # pjsip.conf [trunk-loopback] identify match
PHONES_IP = "127.0.0.3"  # where the simulated agent phones live

SAMPLE_RATE = 8000
PTIME_MS = 20
SAMPLES = SAMPLE_RATE * PTIME_MS // 1000  # 160 per packet
PT_PCMU = 0
PT_EVENT = 101  # telephone-event, as offered in the scenarios' SDP
ULAW_SILENCE = b"\xff"
DTMF_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
DTMF_MS = 160
STOP_TIMEOUT_S = 5.0


class SippError(RuntimeError):
    """SIPp could not be prepared or run."""


# ---- RTP pcap (pure) ------------------------------------------------------------------


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_frame(payload: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
        socket.inet_aton(src[0]), socket.inet_aton(dst[0]),
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    ether = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ether + ip + udp


def rtp_pcap(
    ulaw: bytes,
    *,
    dtmf: Sequence[tuple[float, str]] = (),
    lead_s: float = 0.0,
    ssrc: int | None = None,
) -> bytes:
    """A pcap of one RTP stream (PCMU, 20 ms packets) for SIPp's play_pcap_audio.

    ``lead_s`` seconds of silence come first; each ``(at_s, digit)`` of ``dtmf``
    is sent at ``at_s`` as an RFC 4733 event of 160 ms (audio pauses meanwhile:
    the audio that follows is not cut, only delayed). Addresses and ports in the
    frames are placeholders: SIPp sends to the negotiated media address.
    """
    ssrc = random.getrandbits(32) if ssrc is None else ssrc
    src, dst = (TRUNK_IP, 40000), ("127.0.0.1", 10000)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    seq, slot = random.getrandbits(15), 0

    def emit(payload_type: int, marker: bool, timestamp: int, payload: bytes) -> None:
        nonlocal seq
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payload_type,
                             seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
        frame = _udp_frame(header + payload, src, dst)
        micros = slot * PTIME_MS * 1000
        out.append(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000,
                               len(frame), len(frame)))
        out.append(frame)
        seq += 1

    def audio(chunk: bytes) -> None:
        nonlocal slot
        emit(PT_PCMU, slot == 0, slot * SAMPLES, chunk.ljust(SAMPLES, ULAW_SILENCE))
        slot += 1

    events = sorted(dtmf)
    for _at, digit in events:
        if digit not in DTMF_EVENTS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
    position = 0
    lead_slots = round(lead_s * 1000 / PTIME_MS)
    pending = list(events)
    while position < len(ulaw) or pending or slot < lead_slots:
        if pending and slot * PTIME_MS >= pending[0][0] * 1000:
            _at, digit = pending.pop(0)
            start = slot * SAMPLES
            steps = DTMF_MS // PTIME_MS
            for step in range(1, steps + 1):
                payload = struct.pack("!BBH", DTMF_EVENTS[digit], 10, step * SAMPLES)
                emit(PT_EVENT, step == 1, start, payload)
                slot += 1
            end = struct.pack("!BBH", DTMF_EVENTS[digit], 0x80 | 10, steps * SAMPLES)
            for _ in range(3):  # the end packet, sent three times (RFC 4733 2.5.1.4)
                emit(PT_EVENT, False, start, end)
            continue
        if slot < lead_slots or position >= len(ulaw):
            audio(ULAW_SILENCE * SAMPLES)
        else:
            audio(ulaw[position:position + SAMPLES])
            position += SAMPLES
    return b"".join(out)


# ---- running SIPp ---------------------------------------------------------------------


def free_port(ip: str, kind: int = socket.SOCK_DGRAM, *, even: bool = False) -> int:
    """A port free on ``ip`` now (an even one, with the next odd one free, for RTP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((ip, 0))
            port = int(s.getsockname()[1])
        if not even:
            return port
        port -= port % 2
        try:
            with socket.socket(socket.AF_INET, kind) as a, socket.socket(
                socket.AF_INET, kind
            ) as b:
                a.bind((ip, port))
                b.bind((ip, port + 1))
        except OSError:
            continue
        return port
    raise SippError(f"no free port pair on {ip}")


@dataclass
class SippRun:
    """One SIPp process inside the root."""

    name: str
    proc: asyncio.subprocess.Process
    folder: Path  # host path of its files
    _output: bytes = field(default=b"", repr=False)

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def wait(self, timeout_s: float) -> int:
        """Its exit status (0: every SIPp call succeeded)."""
        try:
            out, _ = await asyncio.wait_for(self.proc.communicate(), timeout_s)
        except TimeoutError:
            raise SippError(f"SIPp {self.name} still running after {timeout_s:.0f} s\n"
                            f"{self.log_tail()}") from None
        self._output += out or b""
        return int(self.proc.returncode or 0)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                out, _ = await asyncio.wait_for(self.proc.communicate(), STOP_TIMEOUT_S)
                self._output += out or b""
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()

    def log_tail(self, chars: int = 3000) -> str:
        parts = [self._output.decode(errors="replace")[-chars:]]
        for path in sorted(self.folder.glob(f"{self.name}*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(p for p in parts if p.strip())


class SippLab:
    """SIPp processes and their files in one temporary folder of the root."""

    def __init__(self, sandbox: AsteriskSandbox) -> None:
        self.sandbox = sandbox
        self.inside = f"/tmp/cc-sipp-{uuid.uuid4().hex[:10]}"
        self.folder = sandbox.root / self.inside.lstrip("/")
        self.folder.mkdir(parents=True, mode=0o700)
        self.runs: list[SippRun] = []

    async def __aenter__(self) -> SippLab:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for run in self.runs:
            await run.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- files --

    def _inside(self, host: Path) -> str:
        return self.inside + "/" + str(host.relative_to(self.folder))

    async def _chroot(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "chroot", str(self.sandbox.root), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode:
            raise SippError(f"{args[0]} failed ({proc.returncode}): {out.decode()[-1000:]}")

    async def ulaw(self, wav: Path) -> bytes:
        """The WAV as raw 8 kHz mono mu-law (sox in the root; shared files are read
        where the root mounts them, others copied to the lab folder first)."""
        wav = Path(wav).resolve()
        try:
            source = SHARED_MOUNT_POINT + "/" + str(wav.relative_to(self.sandbox.shared_dir))
        except ValueError:
            copy = self.folder / f"in-{uuid.uuid4().hex[:8]}.wav"
            shutil.copyfile(wav, copy)
            source = self._inside(copy)
        raw = self.folder / f"audio-{uuid.uuid4().hex[:8]}.ul"
        await self._chroot("sox", source, "-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1",
                           "-e", "mu-law", self._inside(raw))
        data = raw.read_bytes()
        raw.unlink()
        return data

    async def pcap(
        self, name: str, wav: Path | None, *, dtmf: Sequence[tuple[float, str]] = (),
        lead_s: float = 0.0, silence_s: float = 1.0,
    ) -> str:
        """An RTP pcap in the lab folder (path inside the root)."""
        audio = await self.ulaw(wav) if wav else ULAW_SILENCE * int(SAMPLE_RATE * silence_s)
        path = self.folder / f"{name}.pcap"
        path.write_bytes(rtp_pcap(audio, dtmf=dtmf, lead_s=lead_s))
        return self._inside(path)

    def _scenario(self, template: str, name: str, values: dict[str, str]) -> str:
        text = (SCENARIOS / template).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        if "{{" in text:
            raise SippError(f"{template}: unfilled placeholder")
        path = self.folder / f"{name}.xml"
        path.write_text(text, encoding="utf-8")
        return self._inside(path)

    async def _start(self, name: str, args: list[str]) -> SippRun:
        host, port = ASTERISK_SIP
        cmd = [
            "chroot", str(self.sandbox.root), "/usr/bin/sipp", f"{host}:{port}", *args,
            "-t", "u1", "-nostdin", "-trace_err",
            "-error_file", f"{self.inside}/{name}-errors.log",
            "-trace_msg", "-message_file", f"{self.inside}/{name}-messages.log",
        ]  # fmt: skip
        log.debug("starting SIPp %s", name)
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env={**os.environ, "TERM": "dumb"},
            start_new_session=True,
        )  # fmt: skip
        run = SippRun(name, proc, self.folder)
        self.runs.append(run)
        return run

    def _csv(self, name: str, rows: Sequence[Sequence[str]]) -> str:
        for row in rows:
            for value in row:
                if not value or any(c in value for c in ";\n\r"):
                    raise SippError(f"{name}: value not allowed in an injection file")
        path = self.folder / f"{name}.csv"
        path.write_text("SEQUENTIAL\n" + "".join(";".join(r) + ";\n" for r in rows))
        path.chmod(0o600)
        return self._inside(path)

    # -- what tests use --

    async def agents(
        self,
        accounts: Sequence[tuple[str, str]],
        *,
        audio: Path | None = None,
        ring_s: float = 0.5,
        expires_s: int = 300,
        name: str = "agents",
        answer: bool = True,
    ) -> SippRun:
        """Register phones ``(user, password)`` and answer their calls, playing
        ``audio`` (or silence) on every call, until stopped. ``answer=False``:
        phones that ring (180) and are never picked up, whatever calls."""
        register = self._scenario("agent_register.xml", f"{name}-register", {
            "EXPIRES": str(expires_s), "REFRESH_MS": str(expires_s * 1000 * 2 // 3)})
        if answer:
            pcap = await self.pcap(f"{name}-audio", audio, silence_s=60)
            incoming = self._scenario("agent_answer.xml", f"{name}-answer", {
                "RING_MS": str(round(ring_s * 1000)), "PCAP": pcap})
        else:
            incoming = self._scenario("agent_no_answer.xml", f"{name}-ringing", {})
        users = self._csv(f"{name}-users", [list(a) for a in accounts])
        n = str(len(accounts))
        return await self._start(name, [
            "-sf", register, "-oocsf", incoming, "-inf", users, "-m", n, "-l", n, "-r", "50",
            "-i", PHONES_IP, "-p", str(free_port(PHONES_IP)),
            "-mi", PHONES_IP, "-mp", str(free_port(PHONES_IP, even=True)), "-aa",
        ])  # fmt: skip

    async def register_refused(self, user: str, password: str, *, timeout_s: float = 15) -> bool:
        """Whether a registration with these credentials is refused."""
        name = f"refused-{uuid.uuid4().hex[:6]}"
        scenario = self._scenario("agent_register_refused.xml", name, {})
        users = self._csv(f"{name}-users", [[user, password]])
        run = await self._start(name, [
            "-sf", scenario, "-inf", users, "-m", "1", "-i", PHONES_IP,
            "-p", str(free_port(PHONES_IP)), "-timeout", f"{round(timeout_s)}s", "-timeout_error",
        ])  # fmt: skip
        return await run.wait(timeout_s + 10) == 0

    async def call(
        self,
        number: str,
        *,
        caller: str = "13800000000",
        audio: Path | None = None,
        digits: str = "",
        digits_at_s: float = 2.0,
        hold_s: float = 30.0,
        name: str | None = None,
    ) -> SippRun:
        """A caller on the loopback trunk: dial ``number``, key ``digits`` (RFC 4733)
        ``digits_at_s`` after the answer, talk (``audio`` after the digits, else
        silence), hang up after ``hold_s`` unless the hotline hangs up first.
        A short ``hold_s`` is the caller who gives up early."""
        if not caller.isdigit() or not number.isdigit():
            raise SippError("caller and number must be digits")
        name = name or f"call-{uuid.uuid4().hex[:6]}"
        dtmf = [(digits_at_s + i * 0.5, d) for i, d in enumerate(digits)]
        lead = digits_at_s + len(digits) * 0.5
        pcap = await self.pcap(f"{name}-audio", audio, dtmf=dtmf, lead_s=lead, silence_s=1)
        scenario = self._scenario("caller.xml", name, {
            "CALLER": caller, "PCAP": pcap, "HOLD_MS": str(round(hold_s * 1000))})
        return await self._start(name, [
            "-sf", scenario, "-s", number, "-m", "1", "-l", "1",
            "-i", TRUNK_IP, "-p", str(free_port(TRUNK_IP)),
            "-mi", TRUNK_IP, "-mp", str(free_port(TRUNK_IP, even=True)),
            "-timeout", f"{round(hold_s + 60)}s", "-timeout_error",
        ])  # fmt: skip
