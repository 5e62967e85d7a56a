"""One AGI conversation with Asterisk over an asyncio stream (FastAGI).

Why not pyst2's ``AGI`` class directly: its ``__init__`` installs a SIGHUP
handler (which fails off the main thread and is meaningless for a socket),
it reads blocking file objects, its ``fastagi`` module is Python 2 only, a
bare ``HANGUP`` line ends in a plain ``ValueError`` and its ``_quote`` neither
escapes quotes nor backslashes.

What we reuse from pyst2 without ever instantiating ``AGI``: its module-level
``re_code`` (status code and rest of a line) and its ``DEFAULT_TIMEOUT``. Our
exceptions derive from pyst2's ``AGIError`` so code that already catches pyst2
errors keeps working. The ``key=value (data)`` pairs of a ``200`` line are read
as pyst2's ``re_kv`` reads them, but by a linear scan: that expression backtracks
quadratically on a long run of word characters without ``=`` (one 64 KiB line
held the event loop, every call on the server, for about 12 s). Everything else
is written here: asyncio line I/O with timeouts and size limits, header parsing,
argument quoting the way Asterisk's ``parse_args()`` reads it (double quotes
group, a backslash escapes the next character), multi-line ``520`` usage
responses, and typed hang-up detection (``HANGUP`` line, ``511`` dead channel,
EOF, and ``200 result=-1`` when a ``CHANNEL STATUS`` probe confirms the channel
is gone; on a live channel that answer is a failed command) as :class:`AgiHangup`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from asterisk import agi as pyst2_agi

DEFAULT_TIMEOUT_MS: int = pyst2_agi.DEFAULT_TIMEOUT
HEADER_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0
# Playback and digit-collection commands answer only when the media ends.
MEDIA_TIMEOUT_S = 300.0
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADER_LINES = 200
MAX_USAGE_LINES = 100

_HEADER_KEY = re.compile(r"^agi_[A-Za-z0-9_]+$")
DTMF_DIGITS = "0123456789*#"


class AgiError(pyst2_agi.AGIError):
    """Base of every AGI failure raised by this package."""


class AgiHangup(AgiError):
    """The caller hung up (or the channel died): not an error, the call ended."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgiProtocolError(AgiError):
    """The peer said something that is not AGI, too much of it, or nothing in time."""


class AgiCommandError(AgiError):
    """Asterisk refused a command (5xx other than 511), or it failed on a live channel."""

    def __init__(self, code: int, message: str, usage: str = "") -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.usage = usage


@dataclass(slots=True)
class AgiResponse:
    """A parsed ``200`` response: ``result`` value, its ``(data)`` and other pairs."""

    code: int
    result: str
    data: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    line: str = ""


def quote_arg(value: object) -> str:
    """Quote one command argument for Asterisk's AGI argument parser.

    Always double-quoted (so spaces and empty strings survive), with ``\\`` and
    ``"`` escaped by a backslash. A line break cannot be sent in an AGI command
    line at all, so it is refused instead of silently cutting the command.
    """
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError("AGI arguments cannot contain line breaks")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_command(command: str, *args: object) -> str:
    """The full command line (with newline) for ``command`` and quoted ``args``."""
    command = command.strip()
    if not command or "\n" in command or "\r" in command:
        raise ValueError(f"bad AGI command {command!r}")
    return " ".join([command, *(quote_arg(a) for a in args)]) + "\n"


# A pair as pyst2's re_kv finds it, anchored at the start of a word: a match may only
# begin where a word begins, so a run without "=" is scanned once, not once per
# character (pyst2's findall retries inside the run: quadratic).
_PAIR = re.compile(r"(?<!\w)(\w+)=(\S+)")
_SPACES = re.compile(r"\s*")
# Asterisk's status codes have three digits; a longer run is not AGI (and int()
# refuses more than 4,300 digits with a ValueError).
_MAX_CODE_DIGITS = 3


def _pairs(rest: str) -> list[tuple[str, str, str]]:
    """``(key, value, data)`` of each ``key=value (data)`` in ``rest``, as
    ``pyst2_agi.re_kv.findall`` gives them: ``data`` runs from the ``(`` after a
    value to the last ``)`` of the line. Linear in the line's length."""
    pairs: list[tuple[str, str, str]] = []
    last_close = rest.rfind(")")
    position = 0
    while (match := _PAIR.search(rest, position)) is not None:
        key, value = match.groups()
        position = match.end()
        data = ""
        after_spaces = _SPACES.match(rest, position)
        opening = after_spaces.end() if after_spaces else position
        if opening < len(rest) and rest[opening] == "(" and last_close > opening:
            data = rest[opening + 1:last_close]
            position = last_close + 1
        pairs.append((key, value, data))
    return pairs


def parse_result_line(line: str) -> AgiResponse:
    """Parse a ``200 result=...`` line the way pyst2 does (``re_code``, then the
    pairs of ``re_kv``, read linearly: :func:`_pairs`).

    ``200 result= (timeout)`` (GET DATA with nothing typed) has an empty value,
    which pyst2's ``re_kv`` cannot match; it is read as result ``""``.
    """
    match = pyst2_agi.re_code.search(line)
    code_text, rest = match.groups() if match else ("", line)
    if not code_text or len(code_text) > _MAX_CODE_DIGITS:
        raise AgiProtocolError(f"not an AGI response: {line[:80]!r}")
    response = AgiResponse(code=int(code_text), result="", line=line)
    pairs = _pairs(rest)
    for key, value, data in pairs:
        if key == "result":
            response.result, response.data = value, data
        else:
            response.extra[key] = value
    if not any(key == "result" for key, _, _ in pairs):
        empty = re.match(r"\s*result=\s*(?:\((?P<data>.*)\))?", rest)
        if empty is None:
            raise AgiProtocolError(f"200 response without result: {line[:80]!r}")
        response.data = empty.group("data") or ""
    return response


def _digit_from_result(response: AgiResponse) -> str:
    """A DTMF result is the ASCII code of the key, ``0`` for none."""
    if response.result in ("", "0"):
        return ""
    try:
        return chr(int(response.result))
    except (ValueError, OverflowError) as exc:
        raise AgiProtocolError(f"result is not a digit: {response.line!r}") from exc


# Asked after a "200 result=-1" to tell a hang-up from a failed command.
PROBE_COMMAND = "CHANNEL STATUS"


class AgiChannel:
    """The Asterisk side of one FastAGI connection: environment, then commands.

    Every command either returns a parsed :class:`AgiResponse` (or a value
    derived from it) or raises :class:`AgiHangup`, :class:`AgiCommandError`
    or :class:`AgiProtocolError`. After a hang-up Asterisk still accepts the
    "dead channel" commands (SET/GET VARIABLE, VERBOSE), so sending is not
    blocked; ``hung_up`` tells whether a hang-up was seen.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        header_timeout_s: float = HEADER_TIMEOUT_S,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        media_timeout_s: float = MEDIA_TIMEOUT_S,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.header_timeout_s = header_timeout_s
        self.command_timeout_s = command_timeout_s
        self.media_timeout_s = media_timeout_s
        self.env: dict[str, str] = {}
        self.hung_up = False
        self.hangup_reason = ""
        self._lock = asyncio.Lock()

    # -- environment -------------------------------------------------------

    async def read_environment(self) -> dict[str, str]:
        """Read the ``agi_key: value`` lines up to the blank line."""
        try:
            async with asyncio.timeout(self.header_timeout_s):
                return await self._read_headers()
        except TimeoutError as exc:
            raise AgiProtocolError(
                f"no complete AGI environment within {self.header_timeout_s} s"
            ) from exc

    async def _read_headers(self) -> dict[str, str]:
        total = 0
        for _ in range(MAX_HEADER_LINES):
            raw = await self._read_line(eof_error=AgiProtocolError)
            total += len(raw)
            if total > MAX_HEADER_BYTES:
                raise AgiProtocolError("AGI environment too large")
            line = self._decode(raw).rstrip("\r\n")
            if not line.strip():
                if not self.env:
                    raise AgiProtocolError("empty AGI environment")
                return self.env
            key, sep, value = line.partition(":")
            key = key.strip()
            if not sep or not _HEADER_KEY.match(key):
                raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
            self.env[key] = value.strip()
        raise AgiProtocolError("too many AGI environment lines")

    @property
    def script(self) -> str:
        """The request path without slashes or query: ``agi://host/ivr?x=1`` -> ``ivr``."""
        script = self.env.get("agi_network_script", "")
        if not script:
            request = self.env.get("agi_request", "")
            if "://" in request:
                script = request.split("://", 1)[1].partition("/")[2]
        return script.split("?", 1)[0].strip("/")

    @property
    def caller_number(self) -> str:
        number = self.env.get("agi_callerid", "")
        return "" if number.lower() in ("unknown", "") else number

    @property
    def unique_id(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def channel_name(self) -> str:
        return self.env.get("agi_channel", "")

    # -- low level ---------------------------------------------------------

    @staticmethod
    def _decode(raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AgiProtocolError(f"line is not UTF-8: {raw[:40]!r}") from exc

    async def _read_line(self, eof_error: type[AgiError] = AgiHangup) -> bytes:
        try:
            return await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if eof_error is AgiHangup:
                self._mark_hangup("connection closed (EOF)")
                raise AgiHangup("connection closed (EOF)") from exc
            raise eof_error("connection closed before the end of the AGI environment") from exc
        except asyncio.LimitOverrunError as exc:
            raise AgiProtocolError("line too long") from exc
        except (ConnectionError, OSError) as exc:
            self._mark_hangup(f"connection lost: {exc}")
            raise AgiHangup(f"connection lost: {exc}") from exc

    def _mark_hangup(self, reason: str) -> None:
        if not self.hung_up:
            self.hung_up = True
            self.hangup_reason = reason

    async def execute(
        self, command: str, *args: object, response_timeout_s: float | None = None
    ) -> AgiResponse:
        """Send one command and return its ``200`` response."""
        line = build_command(command, *args)
        timeout = self.command_timeout_s if response_timeout_s is None else response_timeout_s
        async with self._lock:
            try:
                self._writer.write(line.encode("utf-8"))
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                self._mark_hangup(f"connection lost: {exc}")
                raise AgiHangup(f"connection lost: {exc}") from exc
            try:
                async with asyncio.timeout(timeout):
                    response = await self._read_response(command)
            except TimeoutError as exc:
                raise AgiProtocolError(f"no response to {command} within {timeout} s") from exc
            if response.result == "-1" and command != PROBE_COMMAND:
                await self._raise_failure(command)
            return response

    async def _raise_failure(self, command: str) -> None:
        """``200 result=-1`` means a hang-up OR a failed command on a live channel
        (a prompt file that cannot be played answers so too). Ask which, so a
        missing prompt goes to the error policy instead of passing for a hang-up."""
        try:
            async with asyncio.timeout(self.command_timeout_s):
                self._writer.write(build_command(PROBE_COMMAND).encode("utf-8"))
                await self._writer.drain()
                probe = await self._read_response(PROBE_COMMAND)
        except (TimeoutError, ConnectionError, OSError) as exc:
            self._mark_hangup(f"{command}: result=-1, then no answer ({exc!r})")
            raise AgiHangup(f"{command}: result=-1 and the channel is gone") from exc
        if probe.result == "-1":
            self._mark_hangup(f"{command}: result=-1")
            raise AgiHangup(f"{command}: result=-1 (hang-up)")
        raise AgiCommandError(200, f"{command}: failed (result=-1) on a live channel")

    async def _read_response(self, command: str) -> AgiResponse:
        while True:
            line = self._decode(await self._read_line()).strip()
            if line == "HANGUP":
                if self.hung_up:
                    # Already known (e.g. after "200 result=-1"): the real response follows.
                    continue
                self._mark_hangup("HANGUP from Asterisk")
                raise AgiHangup("HANGUP from Asterisk")
            if line:
                break
        if line.startswith("200"):
            return parse_result_line(line)
        if line.startswith("511"):
            self._mark_hangup("511 dead channel")
            raise AgiHangup(f"{command}: {line}")
        if line.startswith("520"):
            usage = await self._read_usage(line)
            raise AgiCommandError(520, f"{command}: invalid command syntax", usage)
        code_match = re.match(r"^(\d{3})[ -](.*)$", line)
        if code_match:
            raise AgiCommandError(int(code_match.group(1)), f"{command}: {code_match.group(2)}")
        raise AgiProtocolError(f"unexpected response to {command}: {line[:80]!r}")

    async def _read_usage(self, first: str) -> str:
        lines = [first]
        if first.startswith("520-"):
            for _ in range(MAX_USAGE_LINES):
                line = self._decode(await self._read_line()).rstrip("\r\n")
                lines.append(line)
                if line.startswith("520 "):
                    break
            else:
                raise AgiProtocolError("520 usage response does not end")
        return "\n".join(lines)

    async def close(self) -> None:
        try:
            self._writer.close()
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    # -- commands ----------------------------------------------------------

    async def answer(self) -> None:
        await self.execute("ANSWER")

    async def stream_file(self, name: str, escape_digits: str = "") -> str:
        """Play ``name`` (no extension); the digit that interrupted it, or ``""``."""
        response = await self.execute(
            "STREAM FILE", name, escape_digits, response_timeout_s=self.media_timeout_s
        )
        return _digit_from_result(response)

    async def record_file(
        self, path: str, *, escape_digits: str, max_ms: int, silence_s: int,
        beep: bool = False,
    ) -> str:
        """Record ``path``.wav (as Asterisk sees it) until a key, ``silence_s`` of
        silence or ``max_ms``; the key that ended it, or ``""``."""
        args: list[object] = [path, "wav", escape_digits, max_ms, 0]
        if beep:
            args.append("BEEP")
        args.append(f"s={silence_s}")
        response = await self.execute(
            "RECORD FILE", *args, response_timeout_s=max_ms / 1000 + self.command_timeout_s
        )
        # Only "(dtmf)" carries a key. After "(timeout)" the result is what Asterisk's
        # last wait for a frame left over, in ms (16: the recording ran to max_ms).
        return _digit_from_result(response) if response.data.startswith("dtmf") else ""

    async def get_data(
        self, prompt: str, timeout_ms: int = DEFAULT_TIMEOUT_MS, max_digits: int = 1
    ) -> str:
        """Play ``prompt`` and collect up to ``max_digits`` digits (``""`` on timeout)."""
        response = await self.execute(
            "GET DATA",
            prompt,
            timeout_ms,
            max_digits,
            response_timeout_s=self.media_timeout_s + timeout_ms / 1000,
        )
        return response.result

    async def wait_for_digit(self, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> str:
        """Wait up to ``timeout_ms`` for one DTMF digit; ``""`` if none came."""
        if timeout_ms < 0:  # -1: wait forever (bounded by the media timeout)
            wait_s = self.media_timeout_s
        else:
            wait_s = self.command_timeout_s + timeout_ms / 1000
        response = await self.execute("WAIT FOR DIGIT", timeout_ms, response_timeout_s=wait_s)
        return _digit_from_result(response)

    async def set_variable(self, name: str, value: object) -> None:
        await self.execute("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        """The variable's value, or ``None`` when it is not set."""
        response = await self.execute("GET VARIABLE", name)
        return response.data if response.result == "1" else None

    async def set_context(self, context: str) -> None:
        await self.execute("SET CONTEXT", context)

    async def set_extension(self, extension: str) -> None:
        await self.execute("SET EXTENSION", extension)

    async def set_priority(self, priority: int | str) -> None:
        await self.execute("SET PRIORITY", priority)

    async def verbose(self, message: str, level: int = 1) -> None:
        clean = message.replace("\r", " ").replace("\n", " ")
        await self.execute("VERBOSE", clean, level)

    async def hangup(self, channel: str = "") -> None:
        if channel:
            await self.execute("HANGUP", channel)
        else:
            await self.execute("HANGUP")
