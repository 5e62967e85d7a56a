"""Real SIP calls at rising concurrency through the sandboxed Asterisk and the
service, beside bare Asterisk measured in the same run.

For each step of N calls, twice:

- **bare Asterisk**: SIPp callers (the same G.711 audio) reach a temporary
  endpoint whose dialplan (``[cc-load-bare]``, docker/asterisk/extensions.conf)
  answers, starts one MixMonitor with r()/t() as ``[cc-agent]`` does, and
  echoes. No IVR, no queue, no agent, no service;
- **bare bridge**: the same callers reach ``[cc-load-bridge]``, which answers
  and Dials the agent phones in turn; the agent's answer starts the same
  MixMonitor on the agent's channel and Dial bridges the two. What Asterisk
  itself spends on a recorded two-party call, without IVR, queue or service;
- **service**: the same callers on the loopback trunk enter ``[hotline]``: the
  IVR (FastAGI) answers and plays the greeting, the caller keys 1 (queue
  ``repair``) or 0 (``general``) by RFC 4733 two seconds after the answer, the
  ACD queues the call and rings one of the SIP agent phones (one SIPp process
  that registered every agent account and answers after ``--ring-s``, playing
  a steady tone), the agent's answer starts the recording, the caller hangs up
  ``--hold-s`` after the IVR answered.

The service runs as ``callcenter serve --workers 0`` (no transcription during
the load: its cost is not measured here) on a private, temporary PostgreSQL.

Printed per step: calls attempted/completed/failed; the peak of simultaneous
calls (SIPp's own count); queue entry -> agent ringing and -> answer (p50/p99,
from ``calls.queued_at``, ``ringing_at``, ``answered_at``: ARI event times;
``ringing_at`` is when the ACD decided, so the time the INVITE actually reached
the agent's phone, seen on the wire, is printed beside it); ARI round trips
during the step and Asterisk's warnings/errors;
CPU time per call of Asterisk, the service and PostgreSQL (``/proc`` utime +
stime deltas over the step, divided by the calls attempted), with the
machine's busy share; the longest silence each caller heard after keying the
menu choice; when each recording started, from the answer.

How silence is measured: SIPp cannot save the audio it receives, so a
packet socket on the loopback interface (``AF_PACKET``, root) sees a copy of
every RTP packet Asterisk sends to the callers' address (127.0.0.2), with the
kernel's receive time, whichever process owns the port. Per caller channel
(Asterisk's RTP port) the window runs from the end of the caller's menu key
(its RFC 4733 end packet) to the caller's BYE; audible = a 20 ms packet whose
peak is above -38 dBFS. The longest stretch without an audible packet is what
the caller heard as silence (no packets at all, or packets of silence alike).

How the recording start is measured: Asterisk writes the WAV until the agent
channel closes; its start is the file's last write time (mtime) minus its
length, compared with ``calls.answered_at``. (``legs.started_at`` is printed
too, but the ACD stamps it with the answer time itself.)

    .venv/bin/python bench/call_load.py --quick
    .venv/bin/python bench/call_load.py   # 10,50,100,200: < 10 min

Needs root (the sandbox, the packet socket) and 127.0.0.x only. Stops by
itself; Ctrl-C or SIGTERM stop SIPp, the service, the database and (when this
run started it) Asterisk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from procstat import (  # noqa: E402  (bench/, beside this file)
    log,
    machine_busy,
    pct,
    private_postgres,
    proc_cpu_s,
    run_interruptible,
    stop_service,
    tree_cpu_s,
)

from callcenter.ari.client import AriClient, AriError, AriNotFound  # noqa: E402
from callcenter.db.connect import connect, create_pool  # noqa: E402
from callcenter.db.migrate import migrate  # noqa: E402
from callcenter.db.store import PgStore  # noqa: E402
from callcenter.sandbox.asterisk import AsteriskSandbox  # noqa: E402
from callcenter.sandbox.sipp import (  # noqa: E402
    TRUNK_IP,
    SippError,
    SippLab,
    SippRun,
    free_port,
)
from callcenter.settings import Settings  # noqa: E402
from callcenter.sip.provision import add_agent  # noqa: E402

GOAL_CONCURRENT = 200
GOAL_CPU_RATIO = 2.0
GOAL_SILENCE_S = 1.0
GOAL_RECORDING_S = 0.5

BARE_IP = "127.0.0.4"  # where the bare-baseline callers live (not the trunk's address)
# The two baselines: endpoints identified by the From user, each into its own context.
BASELINES = {"bare": ("ccloadbare", "cc-load-bare"),
             "bridge": ("ccloadbridge", "cc-load-bridge")}
AGENT_PREFIX = "ld"
SKILLS = ("repair", "general")
HOTLINE_NUMBER = "4008001234"
# Per queue: the menu key and the caller-number prefix of the step's calls.
# Repair: the sub-menu's "other repairs", then "#" skips the problem description.
QUEUE_KEYS = (("repair", "12#"), ("general", "0"))
KEY_AT_S = 2.0
LEAD_S = 3.5  # after the last key
ARI_DYNAMIC = "/asterisk/config/dynamic/res_pjsip"

AUDIBLE_PEAK = 400  # of 32767: about -38 dBFS
SNIFF_SNAPLEN = 2048


# ---- statistics ------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def sec(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---- CPU from /proc --------------------------------------------------------------------


@dataclass
class CpuProbe:
    """Process CPU over a window, by role."""

    roles: dict[str, list[int]]
    trees: set[str] = field(default_factory=set)  # roles counted with their children
    start: dict[str, float] = field(default_factory=dict)
    machine_start: tuple[float, float] = (0.0, 0.0)

    def _read(self) -> dict[str, float]:
        out = {}
        for role, pids in self.roles.items():
            reader = tree_cpu_s if role in self.trees else proc_cpu_s
            out[role] = sum(reader(p) for p in pids)
        return out

    def begin(self) -> None:
        self.start = self._read()
        self.machine_start = machine_busy()

    def end(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        now = self._read()
        busy, total = machine_busy()
        out = {role: now[role] - self.start.get(role, 0.0) for role in now}
        out.update(extra or {})
        span = total - self.machine_start[1]
        out["machine_busy"] = (busy - self.machine_start[0]) / span if span else 0.0
        return out


# ---- the RTP sniffer (a child process: python bench/call_load.py --sniff) --------------



def ulaw_to_linear(byte: int) -> int:
    """G.711 mu-law byte -> 16-bit linear sample."""
    u = ~byte & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return -magnitude if u & 0x80 else magnitude


# Per mu-law byte: its magnitude / 16, so that bytes.translate + max() finds a
# packet's peak in C.
ULAW_PEAK = bytes(min(255, abs(ulaw_to_linear(b)) >> 4) for b in range(256))
AUDIBLE_LEVEL = AUDIBLE_PEAK >> 4

ASTERISK_IP = 0x7F000001
CALLER_IP = 0x7F000002
PHONES_IP = 0x7F000003


def _bpf() -> bytes:
    """Classic BPF: IPv4/UDP Asterisk -> caller address (RTP and SIP), Asterisk ->
    agent phones (SIP), caller -> Asterisk (SIP and RFC 4733 events); incoming
    copies only (on lo every packet is seen twice)."""
    ld_w, ld_h, ld_b, jeq, and_k, ret = 0x20, 0x28, 0x30, 0x15, 0x54, 0x06
    prog: list[tuple[str | None, int, str | None, str | None, int]] = [
        (None, ld_w, None, None, 0xFFFFF004),  # SKF_AD_PKTTYPE
        (None, jeq, "drop", None, 4),  # PACKET_OUTGOING
        (None, ld_h, None, None, 12),
        (None, jeq, None, "drop", 0x0800),
        (None, ld_b, None, None, 23),
        (None, jeq, None, "drop", 17),
        (None, ld_w, None, None, 26),
        (None, jeq, "from_ast", None, ASTERISK_IP),
        (None, jeq, "from_caller", "drop", CALLER_IP),
        ("from_ast", ld_w, None, None, 30),
        (None, jeq, "accept", None, CALLER_IP),
        (None, jeq, None, "drop", PHONES_IP),
        (None, ld_h, None, None, 34),  # to the agent phones: SIP only
        (None, jeq, "accept", "drop", 5060),
        ("from_caller", ld_w, None, None, 30),
        (None, jeq, None, "drop", ASTERISK_IP),
        (None, ld_h, None, None, 36),
        (None, jeq, "accept", None, 5060),
        (None, ld_b, None, None, 43),
        (None, and_k, None, None, 0x7F),
        (None, jeq, "accept", "drop", 101),
        ("accept", ret, None, None, SNIFF_SNAPLEN),
        ("drop", ret, None, None, 0),
    ]
    labels = {label: i for i, (label, *_rest) in enumerate(prog) if label}
    out = b""
    for i, (_label, code, jt, jf, k) in enumerate(prog):
        t = labels[jt] - i - 1 if jt else 0
        f = labels[jf] - i - 1 if jf else 0
        out += struct.pack("=HBBI", code, t, f, k & 0xFFFFFFFF)
    return out


@dataclass
class Stream:
    """What one caller channel (Asterisk RTP port) sent the caller."""

    key_at: float | None = None
    end_at: float | None = None
    last_audible: float | None = None
    last_packet: float | None = None
    first_sound: float | None = None  # first audible packet after the key
    max_gap: float = 0.0
    gap_from: float = 0.0  # where the longest silence began, after the key
    packets: int = 0
    audible: int = 0

    def silence_from(self) -> float:
        assert self.key_at is not None
        return max(self.key_at, (self.last_audible or 0.0) + 0.02)

    def heard(self, at: float) -> None:
        if self.key_at is not None and at > self.key_at:
            start = self.silence_from()
            if at - start > self.max_gap:
                self.max_gap, self.gap_from = at - start, start - self.key_at
            if self.first_sound is None:
                self.first_sound = at - self.key_at
        self.last_audible = at

    def close(self) -> dict[str, Any]:
        end = self.end_at or self.last_packet
        if self.key_at is not None and end is not None and end > self.key_at:
            start = self.silence_from()
            if end - start > self.max_gap:
                self.max_gap, self.gap_from = end - start, start - self.key_at
        return {
            "key": self.key_at is not None, "bye": self.end_at is not None,
            "max_gap": self.max_gap, "gap_from": self.gap_from, "first_sound": self.first_sound,
            "packets": self.packets, "audible": self.audible,
            "window": (end - self.key_at) if (end and self.key_at) else None,
        }


SIP_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
SIP_AUDIO = re.compile(rb"^m=audio (\d+)", re.M)
SIP_FROM_USER = re.compile(rb"^(?:from|f)[ \t]*:[^\r\n]*?sip:([^@;>\r\n]+)@", re.I | re.M)


def sniff() -> int:
    """Run until SIGTERM, then print one JSON line: per stream, see Stream.close."""
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
    program = _bpf()
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
    sock.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
    sock.bind(("lo", 0x0003))  # ETH_P_ALL
    sock.settimeout(0.5)
    streams: dict[int, Stream] = {}
    call_ports: dict[bytes, int] = {}
    byes: dict[bytes, float] = {}
    offered: dict[str, float] = {}  # caller number -> first INVITE to an agent phone
    print("ready", flush=True)
    cpu_start = time.process_time()
    while not stop:
        try:
            data, anc, _flags, _addr = sock.recvmsg(SNIFF_SNAPLEN, 64)
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        at = time.time()
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == 35 and len(value) >= 16:
                secs, nanos = struct.unpack("qq", value[:16])
                at = secs + nanos / 1e9
        if len(data) < 42:
            continue
        ihl = (data[14] & 0x0F) * 4
        udp = 14 + ihl
        src = int.from_bytes(data[26:30], "big")
        sport, dport = struct.unpack("!HH", data[udp:udp + 4])
        payload = data[udp + 8:]
        if data[30:34] == b"\x7f\x00\x00\x03":  # SIP to an agent phone
            if payload.startswith(b"INVITE "):
                user = SIP_FROM_USER.search(payload)
                if user:
                    offered.setdefault(user.group(1).decode(errors="replace"), at)
            continue
        if sport == 5060 or dport == 5060:
            call_id = SIP_CALL_ID.search(payload)
            if call_id is None:
                continue
            cid = call_id.group(1)
            if payload.startswith(b"SIP/2.0 200") and b"INVITE" in payload[:600]:
                audio = SIP_AUDIO.search(payload)
                if audio and src == ASTERISK_IP:
                    call_ports[cid] = int(audio.group(1))
            elif payload.startswith(b"BYE "):
                byes.setdefault(cid, at)
            continue
        if len(payload) < 12:
            continue
        pt = payload[1] & 0x7F
        if src == ASTERISK_IP:  # Asterisk -> caller
            stream = streams.setdefault(sport, Stream())
            stream.packets += 1
            stream.last_packet = at
            if pt == 0:
                start = 12 + 4 * (payload[0] & 0x0F)
                if max(payload[start:].translate(ULAW_PEAK), default=0) >= AUDIBLE_LEVEL:
                    stream.audible += 1
                    stream.heard(at)
        elif pt == 101 and len(payload) >= 16 and payload[13] & 0x80:  # caller's key ends
            stream = streams.setdefault(dport, Stream())
            if stream.key_at is None:
                stream.key_at = at
    drops = None
    with contextlib.suppress(OSError):
        drops = struct.unpack("II", sock.getsockopt(263, 6, 8))[1]  # PACKET_STATISTICS
    for cid, at in byes.items():
        port = call_ports.get(cid)
        if port is not None and port in streams:
            streams[port].end_at = at
    result = {"drops": drops, "cpu_s": time.process_time() - cpu_start,
              "cpu_total_s": time.process_time(), "offered": offered,
              "streams": {str(p): s.close() for p, s in streams.items()}}
    print(json.dumps(result), flush=True)
    return 0


# ---- audio -----------------------------------------------------------------------------


def tone_wav(path: Path, seconds: float, hz: float, *, level: float = 0.3) -> Path:
    """A steady tone, 8 kHz mono 16 bit: audible in every 20 ms of the call."""
    rate = 8000
    frames = bytearray()
    for n in range(int(seconds * rate)):
        frames += struct.pack("<h", int(level * 32767 * math.sin(2 * math.pi * hz * n / rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


def wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path)) as w:
            return w.getnframes() / w.getframerate()
    except (OSError, EOFError, wave.Error):
        return None


# ---- one step --------------------------------------------------------------------------


@dataclass
class StepResult:
    mode: str  # "bare" | "bridge" | "service"
    calls: int
    attempted: int = 0
    sipp_ok: int = 0
    sipp_failed: int = 0
    sipp_failures: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    peak: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    to_ring: list[float] = field(default_factory=list)
    to_answer: list[float] = field(default_factory=list)
    to_invite: list[float] = field(default_factory=list)  # on the wire, at the agent phone
    not_connected: dict[str, int] = field(default_factory=dict)
    silence: list[float] = field(default_factory=list)
    silence_at: list[float] = field(default_factory=list)
    first_sound: list[float] = field(default_factory=list)
    streams_without_key: int = 0
    streams_with_bye: int = 0
    sniff_drops: int | None = None
    rec_start: list[float] = field(default_factory=list)  # recording start - answer
    leg_start: list[float] = field(default_factory=list)  # legs.started_at - answer
    wav_minus_talk: list[float] = field(default_factory=list)
    recordings_missing: int = 0
    recordings: int = 0
    ari_ms: list[float] = field(default_factory=list)  # seconds, despite the name
    asterisk_log: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.attempted - self.completed

    def per_call_ms(self, role: str) -> float | None:
        if role not in self.cpu or not self.attempted:
            return None
        return self.cpu[role] / self.attempted * 1000


def _stat_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        return []
    head = lines[0].rstrip(";").split(";")
    return [dict(zip(head, line.rstrip(";").split(";"), strict=False)) for line in lines[1:]]


def _count(row: dict[str, str], column: str) -> int:
    try:
        return int(row.get(column, "0") or 0)
    except ValueError:
        return 0


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.recordings = work / "recordings"
        self.sandbox = AsteriskSandbox(recordings_dir=self.recordings)
        self.started_asterisk = False
        self.ari: AriClient | None = None
        self.lab: SippLab | None = None
        self.pool: asyncpg.Pool | None = None
        self.pg: Any = None
        self.service: asyncio.subprocess.Process | None = None
        self.service_log = work / "service.log"
        self.phones: SippRun | None = None
        self.agent_users: list[str] = []
        self.pcaps: dict[str, str] = {}
        self.baselines_made: list[str] = []
        self.step_index = 0
        self.web_port = 0

    # -- set-up ----------------------------------------------------------------------

    async def setup(self) -> None:
        args = self.args
        self.recordings.mkdir(parents=True)
        await asyncio.to_thread(self.sandbox.build)
        self.started_asterisk = not self.sandbox.is_running()
        log("starting Asterisk" if self.started_asterisk else "reusing the running Asterisk")
        await asyncio.to_thread(self.sandbox.start)
        self.ari = AriClient(self.sandbox.ari_url, self.sandbox.ari_user,
                             self.sandbox.ari_password)
        await self._baseline_endpoints()
        self.lab = SippLab(self.sandbox)
        audio = self.work / "audio"
        audio.mkdir()
        caller_tone = tone_wav(audio / "caller.wav", max(1.0, args.hold_s - LEAD_S - 1.0), 440)
        agent_tone = tone_wav(audio / "agent.wav", args.hold_s + 30, 660)
        for queue, key in QUEUE_KEYS:
            self.pcaps[queue] = await self.lab.pcap(f"load-caller-{queue}", caller_tone,
                                                    dtmf=[(KEY_AT_S + 0.5 * i, k)
                                                          for i, k in enumerate(key)],
                                                    lead_s=LEAD_S)
        log("starting a private PostgreSQL")
        dsn = await asyncio.to_thread(self._start_pg)
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        self.pool = await create_pool(dsn, max_size=4)
        settings = Settings(database_url=dsn, data_dir=self.work / "data",
                            recordings_dir=self.recordings)
        store = PgStore(self.pool)
        accounts = []
        for i in range(1, args.agents + 1):
            added = await add_agent(store, settings, f"{AGENT_PREFIX}{i:03d}",
                                    name=f"load {i}", skills=SKILLS)
            assert added.credentials is not None
            accounts.append((added.credentials.username, added.credentials.password))
            self.agent_users.append(added.credentials.username)
        log(f"{args.agents} agents added; starting the service (workers=0)")
        await self._start_service(dsn)
        await self._until(self._all_provisioned, 120, "the agents' SIP accounts in Asterisk")
        self.phones = await self.lab.agents(accounts, audio=agent_tone, ring_s=args.ring_s,
                                            name="load-agents")
        await self._until(self._all_online, 120, "every agent phone to register")
        await self._until(self._acd_ready, 60, "the ACD to see every agent available")
        await self._bridge_agents()
        log(f"{args.agents} agent phones registered and available")

    def _start_pg(self) -> str:
        self.pg = private_postgres(self.work)
        return str(self.pg.get_uri())

    async def _start_service(self, dsn: str) -> None:
        self.web_port = free_port("127.0.0.1", socket.SOCK_STREAM)
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "CALLCENTER_DATA_DIR": str(self.work / "data"),
            "CALLCENTER_RECORDINGS_DIR": str(self.recordings),
            "CALLCENTER_WEB_PORT": str(self.web_port),
            "CALLCENTER_WRAP_UP_S": "0",
            "CALLCENTER_RING_TIMEOUT_S": "15",
            "CALLCENTER_LOG_JSON": "true",
        }
        env.pop("CALLCENTER_CONFIG_FILE", None)
        with _write_file(self.service_log) as out:
            self.service = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "callcenter", "serve", "--workers", "0",
                cwd=str(ROOT), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        await self._until(self._healthy, 60, "the service to answer /healthz")

    async def _healthy(self) -> bool:
        assert self.service is not None
        if self.service.returncode is not None:
            raise RuntimeError(f"the service exited ({self.service.returncode}):\n"
                               + self.service_log.read_text(errors="replace")[-3000:])
        try:
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://127.0.0.1:{self.web_port}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def _endpoints(self) -> dict[str, str]:
        assert self.ari is not None
        listing = await self.ari.get("/endpoints/PJSIP")
        return {str(e["resource"]): str(e["state"]) for e in listing}

    async def _all_provisioned(self) -> bool:
        await self._healthy()
        return set(self.agent_users) <= set(await self._endpoints())

    async def _all_online(self) -> bool:
        assert self.phones is not None
        if not self.phones.running:
            raise RuntimeError("the agent phones' SIPp exited:\n" + self.phones.log_tail())
        states = await self._endpoints()
        return all(states.get(u) == "online" for u in self.agent_users)

    async def _acd_ready(self) -> bool:
        """Every agent available, as the ACD wrote it (the API needs a sign-in)."""
        assert self.pool is not None
        states = await self.pool.fetch("SELECT state FROM agents WHERE id LIKE $1",
                                       AGENT_PREFIX + "%")
        return len(states) == self.args.agents and all(r["state"] == "available"
                                                       for r in states)

    async def _until(self, check: Any, within_s: float, what: str) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if await check():
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"timed out after {within_s:.0f} s waiting for {what}")

    async def _baseline_endpoints(self) -> None:
        """Temporary endpoints, identified by the From user, into [cc-load-bare] and
        [cc-load-bridge]."""
        assert self.ari is not None
        for endpoint, context in BASELINES.values():
            fields = [("context", context), ("allow", "!all,ulaw"),
                      ("dtmf_mode", "rfc4733"), ("direct_media", "no"),
                      ("rtp_symmetric", "yes"), ("force_rport", "yes"),
                      ("rewrite_contact", "yes"), ("identify_by", "username")]
            await self.ari.put(f"{ARI_DYNAMIC}/endpoint/{endpoint}", {
                "fields": [{"attribute": k, "value": v} for k, v in fields]})
            self.baselines_made.append(endpoint)

    async def _bridge_agents(self) -> None:
        """[cc-load-bridge] dials the agent phones in turn: CC_LOAD_AGENT_<i> names them."""
        assert self.ari is not None
        await self.ari.post("/asterisk/variable", variable="CC_LOAD_AGENTS",
                            value=str(len(self.agent_users)))
        await self.ari.post("/asterisk/variable", variable="CC_LOAD_NEXT", value="0")
        for i, user in enumerate(self.agent_users):
            await self.ari.post("/asterisk/variable", variable=f"CC_LOAD_AGENT_{i}",
                                value=user)

    # -- steps -----------------------------------------------------------------------

    async def _channels(self) -> int:
        assert self.ari is not None
        return len(await self.ari.list_channels())

    async def _quiet(self, within_s: float = 60) -> None:
        """No channel left in Asterisk (the previous step is over)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if await self._channels() == 0:
                return
            await asyncio.sleep(0.5)
        log(f"warning: {await self._channels()} channels still up after {within_s:.0f} s")

    def _probe(self) -> CpuProbe:
        assert self.service is not None and self.pg is not None
        asterisk = self.sandbox.pid()
        postmaster = int(Path(self.pg.pgdata, "postmaster.pid").read_text().split()[0])
        roles = {
            "asterisk": [asterisk] if asterisk else [],
            "service": [self.service.pid],
            "postgres": [postmaster],
            "phones": [self.phones.proc.pid] if self.phones else [],
        }
        return CpuProbe(roles, trees={"postgres"})

    async def step(self, mode: str, calls: int) -> StepResult:
        assert self.lab is not None
        args = self.args
        self.step_index += 1
        result = StepResult(mode, calls)
        await self._quiet()
        split = [calls - calls // 2, calls // 2]
        rate = args.rate
        runs: list[tuple[SippRun, Path, str]] = []
        sniffer = await self._sniffer() if mode == "service" else None
        probe = self._probe()
        probe.begin()
        children = _children_cpu_s()
        log_from = self._asterisk_log_size()
        pinger = asyncio.create_task(self._ping_ari(result.ari_ms))
        started = time.monotonic()
        prefixes = []
        for (queue, _key), count in zip(QUEUE_KEYS, split, strict=True):
            if not count:
                continue
            name = f"load-{self.step_index}-{mode}-{queue}"
            if mode in BASELINES:
                from_user, ip = BASELINES[mode][0], BARE_IP
            else:
                prefix = f"1{self.step_index:02d}{QUEUE_KEYS.index((queue, _key))}"
                prefixes.append(prefix)
                from_user, ip = prefix + "[call_number]", TRUNK_IP
            scenario = self.lab._scenario("load_caller.xml", name, {
                "FROM_USER": from_user, "PCAP": self.pcaps[queue],
                "HOLD_MS": str(round(args.hold_s * 1000))})
            stats = self.lab.folder / f"{name}-stats.csv"
            share = max(1.0, rate * count / calls)
            run = await self.lab._start(name, [
                "-sf", scenario, "-s", HOTLINE_NUMBER, "-m", str(count), "-l", str(count),
                "-r", f"{share:.2f}", "-i", ip, "-p", str(free_port(ip)),
                "-mi", ip, "-mp", str(free_port(ip, even=True)),
                "-trace_stat", "-stf", self.lab._inside(stats), "-fd", "1",
                "-timeout", f"{round(calls / rate + args.hold_s + 90)}s", "-timeout_error",
            ])  # fmt: skip
            runs.append((run, stats, queue))
        result.attempted = calls
        for run, _stats, _queue in runs:
            try:
                await run.wait(calls / rate + args.hold_s + 120)
            except SippError as exc:  # reported; the step goes on
                log(f"warning: {run.name}: {exc}")
                await run.stop()
        if mode == "service":
            await self._rows_settled(prefixes, calls)
        await self._quiet(30)
        result.cpu = probe.end()
        result.seconds = time.monotonic() - started
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
        result.asterisk_log = self._asterisk_log_since(log_from)
        self._sipp_stats(result, runs)
        sniffed: dict[str, Any] = {}
        if sniffer is not None:
            sniffed = await self._stop_sniffer(sniffer)
            self._silence(result, sniffed)
            result.cpu["sniffer"] = float(sniffed.get("cpu_s", 0.0))
        # The SIPp callers (and the sniffer) are this process's children, reaped by now.
        result.cpu["callers"] = (_children_cpu_s() - children
                                 - float(sniffed.get("cpu_total_s", 0.0)))
        if mode == "service":
            await self._rows(result, prefixes, sniffed.get("offered", {}))
        else:
            self._bare_recordings(result)
        return result

    def _sipp_stats(self, result: StepResult, runs: list[tuple[SippRun, Path, str]]) -> None:
        per_second: dict[str, int] = {}
        for run, stats, _queue in runs:
            rows = _stat_rows(stats)
            if not rows:
                log(f"warning: no SIPp statistics from {run.name}:\n{run.log_tail()}")
                continue
            last = rows[-1]
            result.sipp_ok += _count(last, "SuccessfulCall(C)")
            result.sipp_failed += _count(last, "FailedCall(C)")
            for column, value in last.items():
                if column.startswith("Failed") and column.endswith("(C)") and \
                        column != "FailedCall(C)" and _count(last, column):
                    result.sipp_failures[column[:-3]] = (
                        result.sipp_failures.get(column[:-3], 0) + int(value))
            for row in rows:
                second = row.get("CurrentTime", "")[:19]
                per_second[second] = per_second.get(second, 0) + _count(row, "CurrentCall")
        result.peak = max(per_second.values(), default=0)
        if result.mode in BASELINES:
            result.completed = result.sipp_ok

    async def _rows_settled(self, prefixes: list[str], calls: int) -> None:
        assert self.pool is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            active = await self.pool.fetchval(
                "SELECT count(*) FROM calls WHERE caller_number LIKE ANY($1::text[])"
                " AND ended_at IS NULL", [p + "%" for p in prefixes])
            if active == 0:
                return
            await asyncio.sleep(0.5)
        log("warning: calls still without ended_at 30 s after the callers hung up")

    async def _rows(self, result: StepResult, prefixes: list[str],
                    offered: dict[str, float]) -> None:
        assert self.pool is not None
        rows = await self.pool.fetch(
            "SELECT c.*, (SELECT json_object_agg(r.leg, r.path) FROM recordings r"
            "  WHERE r.call_id = c.id) AS recs,"
            " (SELECT json_object_agg(l.leg, l.started_at) FROM legs l"
            "  WHERE l.call_id = c.id) AS legs"
            " FROM calls c WHERE c.caller_number LIKE ANY($1::text[])",
            [p + "%" for p in prefixes])
        connected = 0
        for row in rows:
            queued, ringing, answered, ended = (row["queued_at"], row["ringing_at"],
                                                row["answered_at"], row["ended_at"])
            if queued and ringing:
                result.to_ring.append((ringing - queued).total_seconds())
            if queued and answered:
                result.to_answer.append((answered - queued).total_seconds())
            invite = offered.get(row["caller_number"])
            if queued and invite:
                result.to_invite.append(invite - queued.timestamp())
            if not (answered and ended and row["agent_id"]):
                why = f"{row['stage']}/{row['hangup_by'] or '-'}"
                result.not_connected[why] = result.not_connected.get(why, 0) + 1
                continue
            recs = _json(row["recs"]) or {}
            legs = _json(row["legs"]) or {}
            good = True
            for leg in ("caller", "agent"):
                started = legs.get(leg)
                if started:
                    result.leg_start.append(
                        (_time(started) - answered).total_seconds())
                path = self.recordings / recs[leg] if leg in recs else None
                length = wav_seconds(path) if path else None
                if path is None or length is None:
                    result.recordings_missing += 1
                    good = False
                    continue
                result.recordings += 1
                talk = (ended - answered).total_seconds()
                result.wav_minus_talk.append(length - talk)
                result.rec_start.append(path.stat().st_mtime - length - answered.timestamp())
            connected += good
        missing_rows = result.attempted - len(rows)
        if missing_rows > 0:
            result.not_connected["no call row"] = missing_rows
        elif missing_rows < 0:  # a caller with two rows (e.g. the IVR's and a fallback's)
            result.not_connected["rows beyond one per call"] = -missing_rows
        # Completed: SIPp saw the whole call succeed, and it reached an agent and
        # was recorded on both legs.
        result.completed = min(connected, result.sipp_ok)

    def _bare_recordings(self, result: StepResult) -> None:
        folder = self.recordings / "load-bare"
        files = list(folder.glob("*/*.wav")) if folder.is_dir() else []
        result.recordings = len(files)
        shutil.rmtree(folder, ignore_errors=True)

    # -- Asterisk's health during a step ---------------------------------------------

    async def _ping_ari(self, into: list[float]) -> None:
        """ARI round trips (GET /asterisk/info) once a second: how responsive Asterisk's
        HTTP side stays under the load (the service's ARI commands share it)."""
        async with AriClient(self.sandbox.ari_url, self.sandbox.ari_user,
                             self.sandbox.ari_password, request_timeout_s=30) as ping:
            while True:
                began = time.monotonic()
                with contextlib.suppress(AriError):
                    await ping.get("/asterisk/info")
                into.append(time.monotonic() - began)
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))

    def _asterisk_log(self) -> Path:
        return self.sandbox.root / "var/log/asterisk/messages"

    def _asterisk_log_size(self) -> int:
        with contextlib.suppress(OSError):
            return self._asterisk_log().stat().st_size
        return 0

    def _asterisk_log_since(self, offset: int) -> dict[str, int]:
        """Asterisk's WARNING/ERROR lines written since ``offset``, counted by text."""
        counts: dict[str, int] = {}
        try:
            with self._asterisk_log().open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return counts
        for line in text.splitlines():
            found = re.search(r"\] (WARNING|ERROR)\[\d+\](?:\[[^\]]*\])? (.*)", line)
            if found:
                key = found.group(1) + " " + re.sub(r"\d+", "#", found.group(2))[:140]
                counts[key] = counts.get(key, 0) + 1
        if self.args.keep_logs:
            with (Path(self.args.keep_logs) / "asterisk-messages.log").open("a") as out:
                out.write(text)
        return counts

    # -- silence ---------------------------------------------------------------------

    async def _sniffer(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--sniff",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        if line.strip() != b"ready":
            raise RuntimeError(f"the RTP sniffer did not start: {line!r}")
        return proc

    async def _stop_sniffer(self, proc: asyncio.subprocess.Process) -> dict[str, Any]:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        lines = out.decode().strip().splitlines()
        return dict(json.loads(lines[-1])) if lines else {}

    def _silence(self, result: StepResult, data: dict[str, Any]) -> None:
        result.sniff_drops = data.get("drops")
        for stream in data.get("streams", {}).values():
            if not stream["key"]:
                if stream["packets"] > 50:
                    result.streams_without_key += 1
                continue
            result.streams_with_bye += bool(stream["bye"])
            result.silence.append(stream["max_gap"])
            result.silence_at.append(stream["gap_from"])
            if stream["first_sound"] is not None:
                result.first_sound.append(stream["first_sound"])

    # -- clean-up --------------------------------------------------------------------

    async def close(self) -> None:
        if self.lab is not None:
            with contextlib.suppress(Exception):
                await self.lab.close()
        await stop_service(self.service)
        if self.ari is not None:
            with contextlib.suppress(Exception):
                await self._delete_dynamic()
            with contextlib.suppress(Exception):
                await self.ari.close()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await self.pool.close()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.pg.cleanup)
        if self.started_asterisk:
            log("stopping Asterisk")
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.sandbox.stop)

    async def _delete_dynamic(self) -> None:
        """The agents' accounts and the baselines' endpoints: Asterisk as it was."""
        assert self.ari is not None
        ari = self.ari
        objects = [("endpoint", name) for name in self.baselines_made]
        for user in self.agent_users:
            objects += [("endpoint", user), ("aor", user), ("auth", user)]
        gate = asyncio.Semaphore(8)

        async def delete(kind: str, name: str) -> None:
            async with gate:
                with contextlib.suppress(AriNotFound):
                    try:
                        await ari.delete(f"{ARI_DYNAMIC}/{kind}/{name}")
                    except AriError as exc:
                        log(f"warning: could not delete {kind} {name}: {exc}")

        await asyncio.gather(*(delete(k, n) for k, n in objects))


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _write_file(path: Path) -> Any:
    return path.open("wb")


def _json(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return dict(json.loads(value)) if isinstance(value, str) else dict(value)


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


# ---- report ----------------------------------------------------------------------------


def _row(label: str, *cells: str, goal: str = "") -> str:
    return f"  {label:44}" + "".join(f" {c:>16}" for c in cells) + f"   {goal}"


def _cpu_ratio(res: StepResult, base: StepResult) -> float | None:
    cost, base_cost = res.per_call_ms("asterisk"), base.per_call_ms("asterisk")
    return cost / base_cost if cost is not None and base_cost else None


def report_step(svc: StepResult, bare: StepResult, bridge: StepResult,
                args: argparse.Namespace) -> str:
    runs = (svc, bare, bridge)

    def each(show: Any) -> list[str]:
        return [show(r) for r in runs]

    def cpu(role: str) -> list[str]:
        return each(lambda r: sec(r.per_call_ms(role), 0))

    lines = [
        f"step {svc.calls} calls  (hold {args.hold_s:.0f} s after the IVR answers, "
        f"{args.rate:g} new calls/s, {args.agents} agents)",
        _row("", "service", "bare Asterisk", "bare bridge", goal="goal"),
        _row("calls attempted / completed / failed",
             *each(lambda r: f"{r.attempted}/{r.completed}/{r.failed}"), goal="0 failed"),
        _row("peak simultaneous calls (SIPp)", *each(lambda r: str(r.peak)),
             goal=f">= {GOAL_CONCURRENT}"),
        _row("queue entry -> agent ringing p50/p99 ms",
             f"{ms(pct(svc.to_ring, .5))}/{ms(pct(svc.to_ring, .99))}", "-", "-",
             goal="(calls.queued_at -> ringing_at)"),
        _row("  queue entry -> INVITE at the phone p50/p99",
             f"{ms(pct(svc.to_invite, .5))}/{ms(pct(svc.to_invite, .99))}", "-", "-",
             goal=f"(on the wire; {len(svc.to_invite)} calls)"),
        _row("queue entry -> answer p50/p99 ms",
             f"{ms(pct(svc.to_answer, .5))}/{ms(pct(svc.to_answer, .99))}", "-", "-"),
        _row("Asterisk CPU per call ms", *cpu("asterisk"),
             goal=f"<= {GOAL_CPU_RATIO:g}x bare (now {sec(_cpu_ratio(svc, bare), 2)}x; "
                  f"{sec(_cpu_ratio(svc, bridge), 2)}x bare bridge)"),
        _row("service CPU per call ms", *cpu("service"), goal="(idle in the baselines)"),
        _row("PostgreSQL CPU per call ms", *cpu("postgres")),
        _row("load: SIPp callers / agent phones / sniffer ms",
             *each(lambda r: f"{sec(r.per_call_ms('callers'), 0)}/"
                             f"{sec(r.per_call_ms('phones'), 0)}/"
                             f"{sec(r.per_call_ms('sniffer'), 0)}")),
        _row("machine busy over the step (2 cores)",
             *each(lambda r: f"{r.cpu.get('machine_busy', 0) * 100:.0f} % of {r.seconds:.0f} s")),
        _row("ARI round trip during the step p50/max ms",
             *each(lambda r: f"{ms(pct(r.ari_ms, .5))}/{ms(max(r.ari_ms, default=None))}"),
             goal="(GET /asterisk/info, 1/s)"),
        _row("silence after the key p50/p99/max s",
             f"{sec(pct(svc.silence, .5))}/{sec(pct(svc.silence, .99))}/"
             f"{sec(max(svc.silence, default=None))}", "-", "-",
             goal=f"<= {GOAL_SILENCE_S:g} s"),
        _row("  callers measured (ended by BYE) / over 1 s",
             f"{len(svc.silence)} ({svc.streams_with_bye}) / "
             f"{sum(s > GOAL_SILENCE_S for s in svc.silence)}", "-", "-",
             goal=f"(sniffer drops {svc.sniff_drops})"),
        _row("  worst silence begins s after the key", sec(_worst_at(svc)), "-", "-"),
        _row("  key -> first sound p50/p99 s",
             f"{sec(pct(svc.first_sound, .5))}/{sec(pct(svc.first_sound, .99))}", "-", "-"),
        _row("recording start - answer p50/max s",
             f"{sec(pct(svc.rec_start, .5))}/{sec(max(svc.rec_start, default=None))}",
             "-", "-", goal=f"<= {GOAL_RECORDING_S:g} s"),
        _row("  legs.started_at - answered_at max s",
             sec(max(svc.leg_start, default=None)), "-", "-", goal="(stamped by the ACD)"),
        _row("  WAV length - talk time p50/min s",
             f"{sec(pct(svc.wav_minus_talk, .5))}/{sec(min(svc.wav_minus_talk, default=None))}",
             "-", "-"),
        _row("  recordings read / missing", f"{svc.recordings}/{svc.recordings_missing}",
             f"{bare.recordings}/-", f"{bridge.recordings}/-"),
    ]
    notes = []
    for res in runs:
        if res.sipp_failures:
            notes.append(f"{res.mode}: SIPp failures {res.sipp_failures}")
        if res.not_connected:
            notes.append(f"{res.mode}: not connected (stage/hangup_by) {res.not_connected}")
        for line, n in sorted(res.asterisk_log.items(), key=lambda kv: -kv[1])[:4]:
            notes.append(f"{res.mode}: Asterisk log {n}x {line}")
        if res.streams_without_key:
            notes.append(f"{res.mode}: {res.streams_without_key} RTP streams without a key")
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def _worst_at(res: StepResult) -> float | None:
    if not res.silence:
        return None
    return res.silence_at[res.silence.index(max(res.silence))]


def verdict(results: list[tuple[StepResult, StepResult, StepResult]]) -> str:
    lines = ["verdict"]
    big = [s for s, _b, _g in results if s.peak >= GOAL_CONCURRENT]
    ok = [s for s in big if s.failed == 0]
    best = max((s.peak for s, _b, _g in results if s.failed == 0), default=0)
    lines.append(
        f"  >= {GOAL_CONCURRENT} concurrent calls, 0 failures: "
        + ("PASS" if ok else "FAIL")
        + f" (largest step without failures peaked at {best} simultaneous calls; "
        + ", ".join(f"{s.calls}: {s.failed} failed, peak {s.peak}" for s, _b, _g in results)
        + ")")
    ratios = [(s.calls, _cpu_ratio(s, b), _cpu_ratio(s, g)) for s, b, g in results]
    cpu_ok = all(r is not None and r <= GOAL_CPU_RATIO for _n, r, _g in ratios)
    lines.append(f"  Asterisk CPU per call <= {GOAL_CPU_RATIO:g}x bare: "
                 + ("PASS" if cpu_ok else "FAIL") + " ("
                 + ", ".join(f"{n}: {sec(r)}x" for n, r, _g in ratios)
                 + "; against the bare bridge: "
                 + ", ".join(f"{n}: {sec(g)}x" for n, _r, g in ratios) + ")")
    silences = [x for s, _b, _g in results for x in s.silence]
    measured = sum(len(s.silence) for s, _b, _g in results)
    connected = sum(s.attempted for s, _b, _g in results)
    over = sum(x > GOAL_SILENCE_S for x in silences)
    lines.append(f"  no caller hears > {GOAL_SILENCE_S:g} s of silence: "
                 + ("PASS" if silences and not over and measured == connected else "FAIL")
                 + f" ({over} of {measured} measured callers over, worst "
                 + f"{sec(max(silences, default=None))} s; {connected} calls placed)")
    starts = [x for s, _b, _g in results for x in s.rec_start]
    missing = sum(s.recordings_missing for s, _b, _g in results)
    late = sum(x > GOAL_RECORDING_S for x in starts)
    lines.append(f"  every recording starts within {GOAL_RECORDING_S:g} s of the answer: "
                 + ("PASS" if starts and not late and not missing else "FAIL")
                 + f" ({late} of {len(starts)} late, {missing} missing, latest "
                 + f"{sec(max(starts, default=None))} s)")
    return "\n".join(lines)


def service_log_summary(path: Path) -> str:
    """The service's warnings and errors (JSON log lines), counted by message."""
    if not path.is_file():
        return ""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                counts[f"(text) {line.strip()[:140]}"] = counts.get(line, 0) + 1
            continue
        if not isinstance(entry, dict):
            continue
        level = str(entry.get("level") or entry.get("levelname") or "").lower()
        if level not in ("warning", "error", "critical", "exception"):
            continue
        text = str(entry.get("event") or entry.get("message") or "")
        error = str(entry.get("exception") or entry.get("error") or "").strip().splitlines()
        if error:
            text += " | " + error[-1]
        key = f"{level} " + re.sub(r"[0-9a-f]{32}|\d+(\.\d+)?", "#", text)[:160]
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return "service log: no warnings or errors"
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:10]
    return "service log, warnings and errors (count, message with numbers as #):\n" + "\n".join(
        f"  {n:5} {line}" for line, n in top)


# ---- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="10,50,100,200",
                        help="simultaneous calls per step (default 10,50,100,200)")
    parser.add_argument("--hold-s", type=float, default=30.0,
                        help="each caller hangs up this long after the IVR answers (30)")
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second (20)")
    parser.add_argument("--agents", type=int, default=None,
                        help="SIP agent accounts (default: the largest step)")
    parser.add_argument("--ring-s", type=float, default=0.5,
                        help="agent phones ring this long before answering (0.5)")
    parser.add_argument("--quick", action="store_true",
                        help="steps 5,10, hold 15 s: a check in about two minutes")
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="copy the service's and Asterisk's logs of the run into DIR")
    parser.add_argument("--sniff", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.hold_s = "5,10", 15.0
    args.step_list = [int(s) for s in str(args.steps).split(",") if s.strip()]
    if not args.step_list or min(args.step_list) < 1:
        parser.error("--steps: positive numbers, comma-separated")
    args.agents = args.agents or max(args.step_list)
    if args.keep_logs:
        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
    if args.hold_s < LEAD_S + 5:
        parser.error(f"--hold-s must be at least {LEAD_S + 5:g}")
    return args


async def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("needs root (the Asterisk sandbox and a packet socket)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="cc-load-"))
    bench = Bench(args, work)
    results: list[tuple[StepResult, StepResult, StepResult]] = []
    began = time.monotonic()
    try:
        await bench.setup()
        print(f"call load: steps {args.step_list}, {args.agents} SIP agents, hold "
              f"{args.hold_s:g} s, {args.rate:g} calls/s; service with workers=0 (no "
              "transcription during the load); recordings on (MixMonitor r()/t())", flush=True)
        for calls in args.step_list:
            log(f"step {calls}: bare Asterisk")
            bare = await bench.step("bare", calls)
            log(f"step {calls}: bare bridge")
            bridge = await bench.step("bridge", calls)
            log(f"step {calls}: service")
            svc = await bench.step("service", calls)
            results.append((svc, bare, bridge))
            print(report_step(svc, bare, bridge, args), flush=True)
            print(flush=True)
        print(verdict(results))
        print(service_log_summary(bench.service_log))
        print(f"measured in {time.monotonic() - began:.0f} s")
        return 0
    finally:
        await bench.close()
        if args.keep_logs and bench.service_log.is_file():
            shutil.copy(bench.service_log, Path(args.keep_logs) / "service.log")
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sniff:
        return sniff()
    return run_interruptible(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
