"""FastAGI fuzzed over real sockets: whatever a peer sends, the server keeps serving.

One :class:`FastAgiServer` on an ephemeral port serves the whole module. Hypothesis
throws at it random bytes, broken ``agi_*`` environments (no blank line, oversized
or non-UTF-8 lines, too many lines, half an environment then close) and valid
environments followed by broken command responses (``200 result=``, an unfinished
``520-`` usage block, ``HANGUP`` lines, random numbers, overlong or non-UTF-8
lines, truncated lines, the connection closed mid-response). Two handlers answer:
a small one of this module that issues every kind of command, and the real IVR
(:func:`make_ivr_handler`), relied on only to answer and issue commands.

After every connection: the serving task is still listening, no request is left
running (``active_requests`` back to 0), no task is left behind, nothing reached
the event loop's exception handler, and the only exceptions that left a handler
are the channel's own (:class:`AgiError`); the server never logged a crashed
request. At the end well-formed sessions still succeed: the IVR answers and
finishes without the fallback, and so does the small handler.

Also here: the channel's linear reading of ``key=value (data)`` pairs gives what
pyst2's regular expression gives (which backtracks quadratically on long lines).

The peer never leaves the server waiting for a line that will not come (a
truncated line or an unfinished usage block is followed by a close, a blank line
by a real one), so no example waits for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.agi import server as server_module
from callcenter.agi.channel import MAX_HEADER_BYTES, AgiChannel, AgiError, parse_result_line
from callcenter.agi.server import STREAM_LIMIT, FastAgiServer
from callcenter.constants import VAR_IVR_RESULT
from callcenter.db.writer import OrderedWriter
from callcenter.ivr.handler import MemoryCallSink, make_ivr_handler
from tests.protocol.test_fastagi import FakeAsterisk, default_env, split_command

# Every test talks to the one server of the module, on the module's event loop.
ON_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
# The server's log events that say an exception escaped its error policy.
CRASH_EVENTS = {"agi.request_crashed"}
# A bound on waits for the server to finish with a connection (it never should
# take long: no example leaves it waiting for a line).
IDLE_WAIT_S = 10.0


# ---- what the server did ---------------------------------------------------------------


@dataclass
class Observed:
    """Everything the module's server let out: log events, loop errors, exceptions."""

    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    foreign_errors: list[BaseException] = field(default_factory=list)

    def crashes(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [e for e in self.events if e[1] in CRASH_EVENTS]


class RecordingLog:
    """Stands in for the server module's structlog logger: records every event
    (with the exception being handled, for ``exception``)."""

    def __init__(self, observed: Observed, context: dict[str, Any] | None = None) -> None:
        self._observed = observed
        self._context = context or {}

    def bind(self, **values: Any) -> RecordingLog:
        return RecordingLog(self._observed, {**self._context, **values})

    def _record(self, level: str, event: str, values: dict[str, Any]) -> None:
        self._observed.events.append((level, event, {**self._context, **values}))

    def debug(self, event: str, **values: Any) -> None:
        self._record("debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._record("info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._record("warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._record("error", event, values)

    def exception(self, event: str, **values: Any) -> None:
        self._record("exception", event, {**values, "exc": sys.exc_info()[1]})


def guarded(handler: Callable[[AgiChannel], Awaitable[None]],
            observed: Observed) -> Callable[[AgiChannel], Awaitable[None]]:
    """``handler``, noting any exception other than the channel's own that leaves it
    (a ``ValueError`` from a response the channel failed to classify, say)."""

    async def run(channel: AgiChannel) -> None:
        try:
            await handler(channel)
        except AgiError:
            raise
        except Exception as exc:
            observed.foreign_errors.append(exc)
            raise

    return run


async def every_command(channel: AgiChannel) -> None:
    """A small handler that issues each kind of command the channel offers."""
    await channel.answer()
    await channel.set_variable("FUZZ", 'a "quoted" \\ value')
    await channel.get_variable("FUZZ")
    await channel.stream_file("fuzz/prompt", "0123456789*#")
    await channel.wait_for_digit(1000)
    await channel.get_data("fuzz/menu", 1000, 3)
    await channel.verbose("fuzzing", 3)
    await channel.hangup()


@dataclass
class Harness:
    server: FastAgiServer
    writer: OrderedWriter
    observed: Observed
    own_tasks: set[asyncio.Task[Any]]
    opened: int = 0

    async def converse(self, head: bytes, replies: Sequence[Reply] = (), *,
                       then: str = "answer") -> None:
        self.opened += 1
        await converse(self.server.port, head, list(replies), then=then)

    def stray_tasks(self) -> set[asyncio.Task[Any]]:
        """Tasks neither the test's nor the harness's own."""
        current = asyncio.current_task()
        return {t for t in asyncio.all_tasks() if t is not current and t not in self.own_tasks}

    async def settled(self) -> None:
        """The server finished with every connection, its writes are done and no
        task is left behind; nothing escaped."""
        # A peer that closed at once may not have been accepted yet: the loop
        # accepts it on one of its next iterations.
        for _ in range(1000):
            if self.server.connections >= self.opened:
                break
            await asyncio.sleep(0)
        assert self.server.connections == self.opened
        assert await self.server.wait_idle(IDLE_WAIT_S), "a request is still running"
        assert self.server.active_requests == 0
        assert await self.writer.flush(IDLE_WAIT_S)
        # A finished task leaves the loop's set on the next iterations.
        for _ in range(100):
            if not self.stray_tasks():
                break
            await asyncio.sleep(0)
        assert self.stray_tasks() == set()
        assert self.server._server is not None and self.server._server.is_serving()
        assert self.observed.loop_errors == []
        assert self.observed.foreign_errors == []
        assert self.observed.crashes() == []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness() -> AsyncIterator[Harness]:
    observed = Observed()
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: observed.loop_errors.append(context))
    writer = OrderedWriter(MemoryCallSink())
    router = {
        "fuzz": guarded(every_command, observed),
        "ivr": guarded(make_ivr_handler(writer.store, writer=writer), observed),
    }
    # The IVR's own log lines are captured, not rendered: a rendered traceback
    # (structlog's default console renderer, outside logs.configure) costs a
    # hundred milliseconds, and hundreds of examples fail a call on purpose.
    with pytest.MonkeyPatch.context() as patch, structlog.testing.capture_logs():
        patch.setattr(server_module, "log", RecordingLog(observed))
        server = FastAgiServer("127.0.0.1", 0, router, header_timeout_s=5.0,
                               command_timeout_s=5.0, media_timeout_s=5.0)
        await server.start()
        try:
            yield Harness(server, writer, observed, set(asyncio.all_tasks()))
        finally:
            await server.stop(timeout_s=5.0)
            await writer.close(timeout_s=1.0)
            loop.set_exception_handler(previous_handler)


# ---- the peer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the peer sends for one command: ``data`` (any bytes), then it closes the
    connection when ``close`` is set (with a reset instead of a FIN: ``reset``)."""

    data: bytes
    close: bool = False
    reset: bool = False


def reset_connection(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP reset, as a crashed peer's kernel does."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
    writer.transport.abort()


def asterisk_answer(line: bytes) -> bytes:
    """A well-formed answer to a command line, the way Asterisk gives it."""
    name, _args = split_command(line.decode("utf-8", "replace").rstrip("\n"))
    if name in ("SET VARIABLE", "VERBOSE", "HANGUP"):
        return b"200 result=1\n"
    if name == "CHANNEL":  # CHANNEL STATUS: the channel is up
        return b"200 result=6\n"
    if name == "GET DATA":
        return b"200 result= (timeout)\n"
    return b"200 result=0\n"


async def converse(port: int, head: bytes, replies: list[Reply], *, then: str = "answer") -> None:
    """Connect and send ``head``; ``then``: ``close`` or ``reset`` at once,
    ``half-close`` (no more from us; read until the server hangs up) or ``answer``
    each command with the next of ``replies`` and, once they are used up, as
    Asterisk would, until it hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        if then == "close":
            return
        if then == "reset":
            reset_connection(writer)
            return
        if then == "half-close":
            writer.write_eof()
            await reader.read()
            return
        pending = list(replies)
        while line := await reader.readline():
            reply = pending.pop(0) if pending else Reply(asterisk_answer(line))
            writer.write(reply.data)
            await writer.drain()
            if reply.reset:
                reset_connection(writer)
            if reply.close:
                return
    except ConnectionError:
        pass  # the server dropped us first: allowed
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


# ---- strategies --------------------------------------------------------------------------

HEADER_KEYS = ("agi_network", "agi_channel", "agi_uniqueid", "agi_callerid", "agi_request",
               "agi_context", "agi_extension", "agi_priority", "agi_arg_1")
SCRIPTS = ("fuzz", "ivr")


def line_text() -> st.SearchStrategy[str]:
    """One line's worth of any text (no line break of its own)."""
    return st.text(max_size=40).map(lambda t: t.replace("\n", " ").replace("\r", " "))


def skipped_by_the_server(line: bytes) -> bool:
    """A line the server passes over while it waits for a response: blank (to
    Python's ``str.strip``) or a repeated ``HANGUP``."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False
    return text in ("", "HANGUP")


def header_line() -> st.SearchStrategy[bytes]:
    valid = st.builds(lambda k, v: f"{k}: {v}\n".encode(), st.sampled_from(HEADER_KEYS),
                      line_text())
    return st.one_of(
        valid,
        st.builds(lambda t: f"{t}\n".encode(), line_text()),  # no agi_ key, no colon
        st.builds(lambda b: b"agi_raw: " + b + b"\n", st.binary(max_size=30)),  # not UTF-8
        st.just(b"agi_big: " + b"x" * (MAX_HEADER_BYTES + 10) + b"\n"),  # over the block size
        st.just(b"agi_huge: " + b"y" * (STREAM_LIMIT + 10) + b"\n"),  # over the line limit
        st.just(b"agi_crlf: yes\r\n"),
        st.just(b"   \t\n"),  # counts as the blank line
    )


def header_block() -> st.SearchStrategy[tuple[bytes, str]]:
    """Header lines and how the peer goes on: after the blank line it answers
    commands; without one it closes, or half-closes and waits for the server."""
    lines = st.lists(header_line(), max_size=8)
    many = st.just([b"agi_arg_%d: x\n" % n for n in range(250)])  # over the line count
    ending = st.sampled_from([(b"\n", "answer"), (b"\n", "close"), (b"", "close"),
                              (b"", "reset"), (b"", "half-close"),
                              (b"agi_unfinished: ha", "half-close")])
    return st.tuples(st.one_of(lines, many), ending).map(
        lambda parts: (b"".join(parts[0]) + parts[1][0], parts[1][1]))


def valid_head(script: str, number: int) -> bytes:
    env = default_env(script, agi_uniqueid=f"1700000000.{number}")
    return ("".join(f"{k}: {v}\n" for k, v in env.items()) + "\n").encode()


RESPONSE_LINES = (
    b"200 result=\n", b"200 result=0\n", b"200 result=1 (value)\n", b"200 result=-1\n",
    b"200 result=-1 endpos=0\n", b"200 result=49 endpos=8000\n", b"200 result= (timeout)\n",
    b"200 result=(\n", b"200\n", b"200 result=x=y=z (a(b)c\n", b"200 result=1114112\n",
    b"200 result=-99999999999999999999\n", b"510 Invalid or unknown command\n",
    b"511 result=-1 Command Not Permitted on a dead channel or intercepted\n",
    b"totally not agi\n", b"520 Invalid command syntax.\n",
    b"2" + b"0" * 5000 + b" result=1\n",  # a status code longer than int() may read
    b"200 " + b"w" * 20_000 + b"\n",  # long, and no "=" in it
    b"200 result=1 (" + b"(" * 5000 + b"\n",
    b"200 " + b"z" * (STREAM_LIMIT + 10) + b"\n",  # over the line limit
)


def reply() -> st.SearchStrategy[Reply]:
    """One reply to a command. Lines the server skips (blank, a second HANGUP) come
    with a line after them, and what leaves it waiting for more is followed by a close."""
    complete = st.sampled_from(RESPONSE_LINES).map(Reply)
    numbers = st.builds(lambda code, rest: Reply(f"{code} {rest}\n".encode()),
                        st.integers(min_value=-10, max_value=10**6), line_text())
    text = st.builds(lambda t: f"{t}\n".encode(), line_text())
    raw = st.builds(lambda b: b.replace(b"\n", b" ") + b"\n", st.binary(max_size=40))
    answered = st.one_of(text, raw).filter(lambda line: not skipped_by_the_server(line)).map(Reply)
    skipped_then_line = st.builds(lambda skip, then: Reply(skip + then),
                                  st.sampled_from([b"\n", b"\r\n", b"HANGUP\n", b"\n\n"]),
                                  st.sampled_from(RESPONSE_LINES[:8]))
    usage_done = st.builds(
        lambda lines: Reply(b"520-Invalid command syntax.  Proper usage follows:\n"
                            + b"".join(f"{t}\n".encode() for t in lines)
                            + b"520 End of proper usage.\n"),
        st.lists(line_text().filter(lambda t: not t.startswith("520 ")), max_size=5))
    usage_unfinished = st.builds(
        lambda n: Reply(b"520-Invalid command syntax.\n" + b"usage\n" * n, close=True),
        st.integers(min_value=0, max_value=120))
    truncated = st.builds(lambda b, reset: Reply(b, close=True, reset=reset),
                          st.sampled_from([b"200 res", b"200 result=1 (unfin", b"HANG", b""]),
                          st.booleans())
    return st.one_of(complete, numbers, answered, skipped_then_line, usage_done,
                     usage_unfinished, truncated)


# ---- the properties -------------------------------------------------------------------


@ON_MODULE_LOOP
@settings(FUZZ, max_examples=1000)
@given(data=st.binary(max_size=300), then=st.sampled_from(["close", "reset", "half-close"]))
async def test_random_bytes_never_hurt_the_server(
    harness: Harness, data: bytes, then: str
) -> None:
    await harness.converse(data, then=then)
    await harness.settled()


@ON_MODULE_LOOP
@settings(FUZZ, max_examples=1500)
@given(block=header_block())
async def test_broken_environments_are_dropped(harness: Harness, block: tuple[bytes, str]) -> None:
    head, then = block
    await harness.converse(head, then=then)
    await harness.settled()


SESSIONS = iter(range(10**9))


@ON_MODULE_LOOP
@settings(FUZZ, max_examples=3000)
@given(script=st.sampled_from(SCRIPTS), replies=st.lists(reply(), max_size=8))
async def test_broken_responses_never_hurt_the_server(
    harness: Harness, script: str, replies: list[Reply]
) -> None:
    await harness.converse(valid_head(script, next(SESSIONS)), replies)
    await harness.settled()


@settings(FUZZ, max_examples=300)
@given(st.text(alphabet=" =()abc-19\t", max_size=60))
def test_result_lines_read_as_pyst2_reads_them(rest: str) -> None:
    """The channel's own reading of ``key=value (data)`` pairs (linear, see
    ``channel.py``) gives what pyst2's regular expression gives."""
    from asterisk.agi import re_kv

    line = "200 " + rest
    expected = re_kv.findall(rest)
    try:
        parsed = parse_result_line(line)
    except AgiError:
        assert not any(key == "result" for key, _, _ in expected)
        return
    result = next(((v, d) for k, v, d in expected if k == "result"), None)
    if result is not None:
        assert (parsed.result, parsed.data) == result
    assert parsed.extra == {k: v for k, v, _ in expected if k != "result"}


@ON_MODULE_LOOP
async def test_a_well_formed_session_succeeds_after_the_fuzzing(harness: Harness) -> None:
    harness.opened += 2
    peer = await FakeAsterisk(plan=["3"]).call(harness.server.port,
                                               default_env(agi_uniqueid="1700000099.1"))
    # The IVR is relied on only to answer and finish (its menus may change).
    assert peer.names()[0] == "ANSWER"
    assert peer.vars_set()[VAR_IVR_RESULT] == "ok"
    assert not peer.fallback_sent()
    ours = await FakeAsterisk().call(harness.server.port, default_env("fuzz"))
    assert ours.names() == ["ANSWER", "SET VARIABLE", "GET VARIABLE", "STREAM FILE",
                            "WAIT FOR DIGIT", "GET DATA", "VERBOSE", "HANGUP"]
    assert not ours.fallback_sent()
    await harness.settled()
    assert harness.writer.dropped == 0
