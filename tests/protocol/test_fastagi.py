"""FastAGI over a real socket: a fake Asterisk peer against FastAgiServer + the IVR.

The peer connects to the server on 127.0.0.1 (ephemeral port), sends the
``agi_*`` environment and answers each command the way Asterisk does. What a
caller "does" is a per-test plan: one entry per STREAM FILE / WAIT FOR DIGIT /
GET DATA command, in order. Arguments are parsed the way Asterisk's
``parse_args()`` does, so quoting is checked end to end.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from callcenter.agi.channel import (
    AgiChannel,
    AgiCommandError,
    build_command,
    parse_result_line,
    quote_arg,
)
from callcenter.agi.server import FastAgiServer
from callcenter.constants import (
    CONTEXT_SAFE_FALLBACK,
    VAR_CALL_ID,
    VAR_IVR_DIGITS,
    VAR_IVR_INTENT,
    VAR_IVR_RESULT,
    VAR_PRIORITY,
    VAR_QUEUE,
    VAR_VIP,
)
from callcenter.core import call_id_for_channel
from callcenter.db.writer import OrderedWriter
from callcenter.ivr.engine import CallerIdentified
from callcenter.ivr.handler import MemoryCallSink, make_ivr_handler

DEAD = "511 result=-1 Command Not Permitted on a dead channel or intercepted"
USAGE_520 = (
    "520-Invalid command syntax.  Proper usage follows:\n"
    "Usage: STREAM FILE <filename> <escape_digits> [sample offset]\n"
    "  Send the given file, allowing playback to be interrupted by the given digits.\n"
    "520 End of proper usage."
)
MEDIA = ("STREAM FILE", "WAIT FOR DIGIT", "GET DATA")
COMMANDS = (
    "STREAM FILE", "WAIT FOR DIGIT", "GET DATA", "GET VARIABLE", "SET VARIABLE",
    "SET CONTEXT", "SET EXTENSION", "SET PRIORITY", "ANSWER", "VERBOSE", "HANGUP",
)  # fmt: skip
# Commands Asterisk still runs once the channel is dead.
DEAD_OK = ("SET VARIABLE", "GET VARIABLE", "VERBOSE")


def parse_agi_args(line: str) -> list[str]:
    """Split a command line like Asterisk's res_agi parse_args()."""
    args: list[str] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                args.append("")
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            args.append("")
            whitespace = False
        args[-1] += ch
        escaped = False
    return args


def split_command(line: str) -> tuple[str, list[str]]:
    args = parse_agi_args(line)
    for name in COMMANDS:
        words = name.split()
        if [a.upper() for a in args[: len(words)]] == words:
            return name, args[len(words) :]
    return " ".join(args[:1]), args[1:]


def default_env(script: str = "ivr", **extra: str) -> dict[str, str]:
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1/{script}",
        "agi_channel": "PJSIP/caller-00000001",
        "agi_language": "zh",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1700000000.1",
        "agi_version": "20.5.0",
        "agi_callerid": "13800138000",
        "agi_calleridname": '张三 "小张"',
        "agi_context": "hotline",
        "agi_extension": "s",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
    }
    env.update(extra)
    return env


@dataclass
class FakeAsterisk:
    """One Asterisk channel speaking AGI to the server.

    ``plan``: per media command, what the caller does: a digit ("1"), ""
    (nothing), "HANGUP" (the HANGUP line), "-1" (``200 result=-1``), "511",
    "520" (usage error), "EOF" (drop the connection), "raw:<line>", or for
    GET DATA the digits typed. ``overrides``: a response for any command by
    name, used every time. ``delays``: seconds to wait before answering a command.
    """

    plan: list[str] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[tuple[str, list[str]]] = field(default_factory=list)
    dead: bool = False
    first_command: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_server: bool = False

    def names(self) -> list[str]:
        return [name for name, _ in self.commands]

    def respond(self, name: str, args: list[str]) -> str | None:
        if self.dead and name not in DEAD_OK:
            return DEAD
        if name in self.overrides:
            return self.overrides[name]
        if name in MEDIA:
            step = self.plan.pop(0) if self.plan else ""
            return self._media(name, step)
        if name == "SET VARIABLE":
            self.variables[args[0]] = args[1]
            return "200 result=1"
        if name == "GET VARIABLE":
            value = self.variables.get(args[0])
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if name in ("VERBOSE",):
            return "200 result=1"
        if name == "HANGUP":
            self.dead = True
            return "200 result=1"
        return "200 result=0"

    def _media(self, name: str, step: str) -> str | None:
        if step == "HANGUP":
            self.dead = True
            return "HANGUP"
        if step == "-1":
            self.dead = True
            return "200 result=-1" + (" endpos=160" if name == "STREAM FILE" else "")
        if step == "511":
            self.dead = True
            return DEAD
        if step == "520":
            return USAGE_520
        if step == "EOF":
            return None
        if step.startswith("raw:"):
            return step[4:]
        if name == "GET DATA":
            return f"200 result={step}" if step else "200 result= (timeout)"
        code = ord(step) if step else 0
        return f"200 result={code}" + (" endpos=8000" if name == "STREAM FILE" else "")

    async def call(self, port: int, env: dict[str, str] | None = None) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = "".join(f"{k}: {v}\n" for k, v in (env or default_env()).items()) + "\n"
            writer.write(head.encode())
            await writer.drain()
            while True:
                raw = await asyncio.wait_for(reader.readline(), 5)
                if not raw:
                    self.closed_by_server = True
                    break
                name, args = split_command(raw.decode().rstrip("\n"))
                self.commands.append((name, args))
                self.first_command.set()
                if name in self.delays:
                    await asyncio.sleep(self.delays[name])
                answer = self.respond(name, args)
                if answer is None:
                    break
                writer.write((answer + "\n").encode())
                await writer.drain()
        finally:
            writer.close()
        return self

    def vars_set(self) -> dict[str, str]:
        return {a[0]: a[1] for n, a in self.commands if n == "SET VARIABLE"}

    def fallback_sent(self) -> bool:
        wanted = [
            ("SET CONTEXT", [CONTEXT_SAFE_FALLBACK]),
            ("SET EXTENSION", ["s"]),
            ("SET PRIORITY", ["1"]),
        ]
        got = [(n, a) for n, a in self.commands if n.startswith("SET ") and n != "SET VARIABLE"]
        return got == wanted


class FailingSink(MemoryCallSink):
    """A store with a bug: every write fails with a real (not transient) error."""

    async def open_call(self, call_id: str, **fields: Any) -> None:
        raise RuntimeError("bug in the store")

    async def update_call(self, call_id: str, **fields: object) -> None:
        raise RuntimeError("bug in the store")

    async def finish_call(self, call_id: str, **fields: Any) -> None:
        raise RuntimeError("bug in the store")


class SlowSink(MemoryCallSink):
    async def update_call(self, call_id: str, **fields: object) -> None:
        await asyncio.sleep(30)


class OutageSink(MemoryCallSink):
    """A database that is away (its writes fail as asyncpg's do) until ``down`` is
    cleared; ``failed`` counts the refused attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.failed = 0

    def _check(self) -> None:
        if self.down:
            self.failed += 1
            raise (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
                   if self.failed % 2 else ConnectionRefusedError(111, "Connection refused"))

    async def open_call(self, call_id: str, **fields: Any) -> None:
        self._check()
        await super().open_call(call_id, **fields)

    async def update_call(self, call_id: str, **fields: object) -> None:
        self._check()
        await super().update_call(call_id, **fields)

    async def finish_call(self, call_id: str, **fields: Any) -> None:
        self._check()
        await super().finish_call(call_id, **fields)


def fast_writer(sink: object) -> OrderedWriter:
    return OrderedWriter(sink, first_delay_s=0.005, max_delay_s=0.05)


async def lookup_vip(number: str) -> CallerIdentified | None:
    return CallerIdentified(known=True, vip="elderly") if number == "13800138000" else None


async def lookup_down(number: str) -> CallerIdentified | None:
    raise ConnectionError("residents table unreachable")


async def boom(channel: AgiChannel) -> None:
    await channel.answer()
    raise RuntimeError("bug in a handler")


probe_results: dict[str, object] = {}


async def probe(channel: AgiChannel) -> None:
    """Exercises the channel's commands; results land in ``probe_results``."""
    tricky = 'say "hi" \\ to C:\\dir and  two  spaces'
    await channel.set_variable("TRICKY", tricky)
    await channel.set_variable("EMPTY", "")
    probe_results["tricky"] = await channel.get_variable("TRICKY")
    probe_results["missing"] = await channel.get_variable("NOPE")
    probe_results["get_data"] = await channel.get_data("callcenter/menu", 3000, 4)
    probe_results["digit"] = await channel.wait_for_digit(1000)
    await channel.verbose("line one\nline two", 3)
    try:
        await channel.stream_file("callcenter/missing-usage", "12")
    except AgiCommandError as exc:
        probe_results["usage"] = exc.usage
    # the multi-line 520 was consumed completely: the next command is in step
    probe_results["after_usage"] = await channel.get_variable("EMPTY")


@pytest.fixture
def sink() -> MemoryCallSink:
    return MemoryCallSink()


@pytest.fixture
def outage() -> OutageSink:
    return OutageSink()


# The writers of the running test's server: run_call waits until they wrote.
WRITERS: list[OrderedWriter] = []


@pytest.fixture
def outage_writer(outage: OutageSink) -> OrderedWriter:
    return fast_writer(outage)


@pytest.fixture
async def server(
    sink: MemoryCallSink, outage_writer: OrderedWriter
) -> AsyncIterator[FastAgiServer]:
    writer = fast_writer(sink)
    failing, slow, away = fast_writer(FailingSink()), fast_writer(SlowSink()), outage_writer
    WRITERS[:] = [writer, failing]
    srv = FastAgiServer(
        "127.0.0.1",
        0,
        {
            "ivr": make_ivr_handler(sink, writer=writer),
            "ivr-failing-sink": make_ivr_handler(FailingSink(), writer=failing),
            "ivr-slow-sink": make_ivr_handler(SlowSink(), writer=slow),
            "ivr-outage": make_ivr_handler(away.store, writer=away),
            "ivr-vip": make_ivr_handler(sink, writer=writer, lookup=lookup_vip),
            "ivr-lookup-down": make_ivr_handler(
                sink, writer=writer, lookup=lookup_down, sink_timeout_s=0.2
            ),
            "boom": boom,
            "probe": probe,
        },
        header_timeout_s=0.5,
        command_timeout_s=2.0,
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(timeout_s=2.0)
        WRITERS.clear()
        for each in (writer, failing, slow, away):
            await each.close(timeout_s=0.1)


async def assert_still_serves(server: FastAgiServer) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["3"]))
    assert peer.vars_set()[VAR_QUEUE] == "consultation"
    assert peer.vars_set()[VAR_IVR_RESULT] == "ok"


async def run_call(
    server: FastAgiServer, peer: FakeAsterisk, env: dict[str, str] | None = None
) -> FakeAsterisk:
    """One call; returns once the server has finished with it too."""
    await peer.call(server.port, env)
    assert await server.wait_idle(5)
    for writer in WRITERS:
        assert await writer.flush(5)
    return peer


def only_call(sink: MemoryCallSink) -> tuple[str, dict[str, object]]:
    assert len(sink.calls) == 1
    return next(iter(sink.calls.items()))


# -- happy paths -------------------------------------------------------------


async def test_keys_1_then_1_route_an_emergency_as_p1(
    server: FastAgiServer, sink: MemoryCallSink
) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["1", "1"]))
    names = peer.names()
    assert names[0] == "ANSWER"
    assert peer.commands[2] == ("STREAM FILE", ["callcenter/welcome", "0123456789*#"])
    assert peer.commands[3] == ("STREAM FILE", ["callcenter/repair", "0123456789*#"])
    assert "WAIT FOR DIGIT" not in names
    got = peer.vars_set()
    assert re.fullmatch(r"[0-9a-f]{32}", got[VAR_CALL_ID])
    assert {k: got[k] for k in (VAR_QUEUE, VAR_IVR_DIGITS, VAR_IVR_INTENT, VAR_PRIORITY)} == {
        VAR_QUEUE: "repair",
        VAR_IVR_DIGITS: "11",
        VAR_IVR_INTENT: "emergency",
        VAR_PRIORITY: "2",
    }
    assert names[-1] == "SET VARIABLE" and peer.commands[-1][1] == [VAR_IVR_RESULT, "ok"]
    assert peer.closed_by_server
    call_id, row = only_call(sink)
    assert call_id == got[VAR_CALL_ID]
    assert row["caller_number"] == "13800138000"
    assert row["channel_id"] == "1700000000.1"
    assert row["stage"] == "queue" and row["queue"] == "repair" and row["priority"] == 2
    assert [e[0] for e in sink.events] == ["open", "update", "update", "update"]
    assert sink.events[1][2] == {"stage": "greeting", "ivr_node": "main"}
    assert sink.events[2][2] == {"stage": "menu", "ivr_node": "repair"}
    kinds = [(e["node"], e["kind"], e["via"]) for _, e in sink.node_events]
    assert kinds == [("main", "entry", ""), ("main", "choice", "key"), ("repair", "entry", ""),
                     ("repair", "choice", "key"), ("repair", "transfer", "")]


async def test_digit_after_greeting_ends(server: FastAgiServer, sink: MemoryCallSink) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["", "", "3"]))
    assert ("WAIT FOR DIGIT", ["5000"]) in peer.commands
    assert peer.vars_set()[VAR_QUEUE] == "consultation"
    stages = [e[2].get("stage") for e in sink.events if e[0] == "update"]
    assert stages == ["greeting", "menu", "queue"]


async def test_invalid_digit_then_valid(server: FastAgiServer) -> None:
    # welcome -> 7 (invalid); "invalid" prompt; menu prompt -> 3
    peer = await run_call(server, FakeAsterisk(plan=["7", "", "3"]))
    played = [a[0] for n, a in peer.commands if n == "STREAM FILE"]
    assert played == ["callcenter/welcome", "callcenter/invalid", "callcenter/main"]
    got = peer.vars_set()
    assert (got[VAR_QUEUE], got[VAR_IVR_DIGITS], got[VAR_IVR_RESULT]) == ("consultation", "3", "ok")


async def test_a_silent_caller_hears_the_spec_script_and_is_hung_up(
    server: FastAgiServer, sink: MemoryCallSink
) -> None:
    peer = await run_call(server, FakeAsterisk(plan=[]))  # never a key, never a word
    played = [a[0] for n, a in peer.commands if n == "STREAM FILE"]
    assert played == ["callcenter/welcome", "callcenter/main", "callcenter/silent_hello",
                      "callcenter/silent_hello", "callcenter/silent_goodbye"]
    assert peer.names().count("WAIT FOR DIGIT") == 4
    assert peer.names()[-1] == "HANGUP" and VAR_QUEUE not in peer.vars_set()
    row = only_call(sink)[1]
    assert (row["end_reason"], row["ivr_node"], row["outcome"], row["finished"]) == (
        "silent_line", "silent", "ivr", True)


async def test_no_input_after_a_key_goes_to_a_person_never_a_hang_up(
    server: FastAgiServer, sink: MemoryCallSink
) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["7"]))  # one wrong key, then nothing
    assert "HANGUP" not in peer.names()
    got = peer.vars_set()
    assert (got[VAR_QUEUE], got[VAR_IVR_DIGITS], got[VAR_IVR_INTENT], got[VAR_IVR_RESULT]) == (
        "general", "", "agent", "ok")
    assert "callcenter/transfer_agent" in [a[0] for n, a in peer.commands if n == "STREAM FILE"]
    assert only_call(sink)[1]["stage"] == "queue"


async def test_caller_id_unknown_is_empty(server: FastAgiServer, sink: MemoryCallSink) -> None:
    await run_call(server, FakeAsterisk(plan=["0"]), default_env(agi_callerid="unknown"))
    assert only_call(sink)[1]["caller_number"] == ""
    assert only_call(sink)[1]["queue"] == "general"


async def test_concurrent_calls(server: FastAgiServer, sink: MemoryCallSink) -> None:
    plans = [["1", "1"], ["", "", "3"], ["7", "", "3"], ["0"]]
    peers = await asyncio.gather(*(
        run_call(server, FakeAsterisk(plan=p), default_env(agi_uniqueid=f"1700000001.{n}"))
        for n, p in enumerate(plans)))
    assert [p.vars_set()[VAR_QUEUE] for p in peers] == [
        "repair",
        "consultation",
        "consultation",
        "general",
    ]
    assert len({p.vars_set()[VAR_CALL_ID] for p in peers}) == 4
    assert len(sink.calls) == 4
    # The id is the channel's: the distributor derives the same one if the IVR fails.
    assert peers[0].vars_set()[VAR_CALL_ID] == call_id_for_channel("1700000001.0")


async def test_known_vip_caller_gets_priority(server: FastAgiServer, sink: MemoryCallSink) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["", "2"]), default_env("ivr-vip"))
    played = [a[0] for n, a in peer.commands if n == "STREAM FILE"]
    assert played[:2] == ["callcenter/welcome", "callcenter/vip_offer"]  # a person first
    got = peer.vars_set()
    assert (got[VAR_QUEUE], got[VAR_PRIORITY], got[VAR_VIP]) == ("complaint", "1", "elderly")
    assert only_call(sink)[1]["priority"] == 1
    other = await run_call(
        server, FakeAsterisk(plan=["2"]), default_env("ivr-vip", agi_callerid="100")
    )
    assert other.vars_set()[VAR_PRIORITY] == "0"
    assert VAR_VIP not in other.vars_set()


async def test_failing_caller_lookup_does_not_break_the_call(server: FastAgiServer) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["3"]), default_env("ivr-lookup-down"))
    got = peer.vars_set()
    assert (got[VAR_QUEUE], got[VAR_PRIORITY], got[VAR_IVR_RESULT]) == (
        "consultation", "0", "ok")


# -- hang-ups ----------------------------------------------------------------


async def test_hangup_during_greeting(server: FastAgiServer, sink: MemoryCallSink) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["HANGUP"]))
    row = only_call(sink)[1]
    assert (row["stage"], row["hangup_by"], row.get("finished")) == ("greeting", "caller", True)
    assert "queue" not in row
    got = peer.vars_set()
    assert VAR_QUEUE not in got
    assert got[VAR_IVR_RESULT] == "hangup"  # SET VARIABLE works on a dead channel
    assert not peer.fallback_sent()
    await assert_still_serves(server)


@pytest.mark.parametrize("how", ["-1", "511", "HANGUP", "EOF"])
async def test_hangup_during_menu(server: FastAgiServer, sink: MemoryCallSink, how: str) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["", "", how]))
    assert peer.names().count("WAIT FOR DIGIT") == 1
    row = only_call(sink)[1]
    assert (row["stage"], row["hangup_by"], row["ivr_node"]) == ("menu", "caller", "main")
    assert sink.node_events[-1][1] == {"node": "main", "kind": "hangup", "via": "", "choice": ""}
    assert VAR_QUEUE not in peer.vars_set()
    assert not peer.fallback_sent()
    await assert_still_serves(server)


async def test_hangup_while_setting_results(server: FastAgiServer, sink: MemoryCallSink) -> None:
    peer = FakeAsterisk(plan=["2"])
    original = peer.respond

    def respond(name: str, args: list[str]) -> str | None:
        if name == "SET VARIABLE" and args[0] == VAR_IVR_DIGITS:
            peer.dead = True
            return "HANGUP"
        return original(name, args)

    peer.respond = respond  # type: ignore[method-assign]
    await run_call(server, peer)
    row = only_call(sink)[1]
    assert (row["stage"], row["queue"], row["hangup_by"]) == ("queue", "complaint", "caller")


# -- error policy ------------------------------------------------------------


async def test_unplayable_prompt_on_a_live_channel_is_an_error_not_a_hangup(
    server: FastAgiServer, sink: MemoryCallSink
) -> None:
    # Asterisk answers "200 result=-1 endpos=0" for a prompt file it cannot open,
    # while the caller is still there: the channel status probe tells them apart.
    peer = await run_call(server, FakeAsterisk(plan=["raw:200 result=-1 endpos=0"]))
    assert "CHANNEL" in peer.names()  # the fake names commands by their first word(s)
    assert peer.fallback_sent()
    assert peer.vars_set()[VAR_IVR_RESULT] == "error"
    row = only_call(sink)[1]
    assert not row.get("finished")  # not recorded as a caller hang-up
    await assert_still_serves(server)


async def test_handler_exception_sends_caller_to_safe_context(server: FastAgiServer) -> None:
    peer = await run_call(server, FakeAsterisk(), default_env("boom"))
    assert peer.names() == ["ANSWER", "SET CONTEXT", "SET EXTENSION", "SET PRIORITY"]
    assert peer.fallback_sent()
    await assert_still_serves(server)


async def test_unknown_script_sends_caller_to_safe_context(server: FastAgiServer) -> None:
    peer = await run_call(server, FakeAsterisk(), default_env("no-such-script"))
    assert peer.fallback_sent()
    await assert_still_serves(server)


async def test_script_from_agi_request_with_query(server: FastAgiServer) -> None:
    env = default_env("ivr")
    del env["agi_network_script"]
    env["agi_request"] = "agi://127.0.0.1:4573/ivr?lang=zh"
    peer = await run_call(server, FakeAsterisk(plan=["3"]), env)
    assert peer.vars_set()[VAR_QUEUE] == "consultation"


async def test_command_error_in_ivr_sets_error_and_falls_back(
    server: FastAgiServer, sink: MemoryCallSink
) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["520"]))
    assert peer.vars_set()[VAR_IVR_RESULT] == "error"
    assert VAR_QUEUE not in peer.vars_set()
    assert peer.fallback_sent()
    await assert_still_serves(server)


async def test_unparseable_response_falls_back(server: FastAgiServer) -> None:
    peer = await run_call(server, FakeAsterisk(overrides={"ANSWER": "totally not agi"}))
    assert peer.fallback_sent()
    await assert_still_serves(server)


# -- sink failures -----------------------------------------------------------


async def test_failing_sink_does_not_break_the_call(server: FastAgiServer) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["", "3"]), default_env("ivr-failing-sink"))
    got = peer.vars_set()
    assert (got[VAR_QUEUE], got[VAR_IVR_RESULT]) == ("consultation", "ok")
    assert not peer.fallback_sent()


async def test_failing_sink_on_hangup(server: FastAgiServer) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["HANGUP"]), default_env("ivr-failing-sink"))
    assert peer.vars_set()[VAR_IVR_RESULT] == "hangup"
    assert not peer.fallback_sent()


async def test_slow_sink_does_not_hold_up_the_call(server: FastAgiServer) -> None:
    peer = await run_call(server, FakeAsterisk(plan=["2"]), default_env("ivr-slow-sink"))
    assert peer.vars_set()[VAR_QUEUE] == "complaint"


async def test_ivr_routes_callers_while_the_database_is_down_and_writes_later(
    server: FastAgiServer, outage: OutageSink, outage_writer: OrderedWriter
) -> None:
    before = datetime.now().astimezone()
    routed = await run_call(server, FakeAsterisk(plan=["3"]), default_env("ivr-outage"))
    hung_up = await run_call(
        server, FakeAsterisk(plan=["", "", "HANGUP"]),
        default_env("ivr-outage", agi_uniqueid="1700000000.2"),
    )
    got = routed.vars_set()
    assert (got[VAR_QUEUE], got[VAR_PRIORITY], got[VAR_IVR_RESULT]) == (
        "consultation", "0", "ok")
    assert not routed.fallback_sent()
    assert hung_up.vars_set()[VAR_IVR_RESULT] == "hangup"
    assert outage.calls == {} and outage.failed > 0  # nothing written while it was down

    outage.down = False  # the database is back
    assert await outage_writer.flush(5)
    call = outage.calls[got[VAR_CALL_ID]]
    assert (call["stage"], call["queue"], call["ivr_digits"], call["priority"]) == (
        "queue", "consultation", "3", 0)
    assert isinstance(call["started_at"], datetime) and call["started_at"] >= before
    mine = [(kind, data) for kind, call_id, data in outage.events if call_id == got[VAR_CALL_ID]]
    assert [kind for kind, _ in mine] == ["open", "update", "update"]  # in order, once each
    other = outage.calls[hung_up.vars_set()[VAR_CALL_ID]]
    assert (other["stage"], other["hangup_by"], other["finished"]) == ("menu", "caller", True)
    assert other["ended_at"] >= call["started_at"]


# -- bad connections ---------------------------------------------------------


async def _raw_connection(port: int, data: bytes, *, close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if close:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_garbage_instead_of_headers(server: FastAgiServer) -> None:
    answer = await _raw_connection(
        server.port, b"\x00\xff\xfe\x16\x03\x01binary\nGET / HTTP/1.1\r\n\r\n", close=False
    )
    assert answer == b""  # dropped without a word
    await assert_still_serves(server)


async def test_http_request_instead_of_headers(server: FastAgiServer) -> None:
    answer = await _raw_connection(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", close=False)
    assert answer == b""
    await assert_still_serves(server)


async def test_client_closes_mid_headers(server: FastAgiServer) -> None:
    answer = await _raw_connection(server.port, b"agi_network: yes\nagi_network_scr")
    assert answer == b""
    await assert_still_serves(server)


async def test_oversized_header_line(server: FastAgiServer) -> None:
    answer = await _raw_connection(
        server.port, b"agi_network: yes\nagi_x: " + b"a" * 200_000, close=False
    )
    assert answer == b""
    await assert_still_serves(server)


async def test_too_many_headers(server: FastAgiServer) -> None:
    many = b"".join(b"agi_arg_%d: %s\n" % (i, b"x" * 200) for i in range(400)) + b"\n"
    answer = await _raw_connection(server.port, many, close=False)
    assert answer == b""
    await assert_still_serves(server)


async def test_silent_client_times_out(server: FastAgiServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        # header_timeout_s is 0.5 in the fixture: the server hangs up on us
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    await assert_still_serves(server)


async def test_empty_environment_is_dropped(server: FastAgiServer) -> None:
    assert await _raw_connection(server.port, b"\n", close=False) == b""
    await assert_still_serves(server)


# -- the channel's command layer --------------------------------------------


async def test_channel_commands_quoting_and_responses(server: FastAgiServer) -> None:
    probe_results.clear()
    peer = await run_call(server, FakeAsterisk(plan=["42", "", "520"]), default_env("probe"))
    tricky = 'say "hi" \\ to C:\\dir and  two  spaces'
    assert peer.variables["TRICKY"] == tricky  # Asterisk's parser got it back intact
    assert peer.variables["EMPTY"] == ""
    assert probe_results["tricky"] == tricky
    assert probe_results["missing"] is None
    assert probe_results["get_data"] == "42"
    assert probe_results["digit"] == ""
    assert ("VERBOSE", ["line one line two", "3"]) in peer.commands
    assert str(probe_results["usage"]).startswith("520-Invalid command syntax")
    assert str(probe_results["usage"]).endswith("520 End of proper usage.")
    assert probe_results["after_usage"] == ""
    assert not peer.fallback_sent()


def test_quote_arg() -> None:
    assert quote_arg("") == '""'
    assert quote_arg("a b") == '"a b"'
    assert quote_arg('a"b\\c') == '"a\\"b\\\\c"'
    assert quote_arg(5) == '"5"'
    with pytest.raises(ValueError):
        quote_arg("two\nlines")
    for value in ["", "x", 'q"q', "b\\", "  ", "中文 值", '\\"']:
        assert parse_agi_args(build_command("SET VARIABLE", "V", value).rstrip("\n")) == [
            "SET",
            "VARIABLE",
            "V",
            value,
        ]


@pytest.mark.parametrize(
    ("line", "result", "data", "extra"),
    [
        ("200 result=0", "0", "", {}),
        ("200 result=49 endpos=12345", "49", "", {"endpos": "12345"}),
        (
            "200 result=1 (value with spaces (and parens))",
            "1",
            "value with spaces (and parens)",
            {},
        ),
        ("200 result= (timeout)", "", "timeout", {}),
        ("200 result=12 (timeout)", "12", "timeout", {}),
    ],
)
def test_parse_result_line(line: str, result: str, data: str, extra: dict[str, str]) -> None:
    parsed = parse_result_line(line)
    assert (parsed.code, parsed.result, parsed.data, parsed.extra) == (200, result, data, extra)


# -- lifecycle ---------------------------------------------------------------


async def test_stop_waits_for_running_requests(sink: MemoryCallSink) -> None:
    srv = FastAgiServer("127.0.0.1", 0, {"ivr": make_ivr_handler(sink)})
    await srv.start()
    port = srv.port
    peer = FakeAsterisk(plan=["1"], delays={"STREAM FILE": 0.5})
    call = asyncio.create_task(peer.call(port))
    await asyncio.wait_for(peer.first_command.wait(), 5)  # the request is running
    await srv.stop(timeout_s=5)
    assert srv.active_requests == 0  # stop() returned only after the request ended
    await asyncio.wait_for(call, 5)
    assert peer.vars_set()[VAR_IVR_RESULT] == "ok"
    assert srv.active_requests == 0
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_stop_cancels_stuck_requests_after_timeout() -> None:
    started = asyncio.Event()

    async def stuck(channel: AgiChannel) -> None:
        started.set()
        await asyncio.sleep(60)

    srv = FastAgiServer("127.0.0.1", 0, {"stuck": stuck})
    await srv.start()
    peer_task = asyncio.create_task(FakeAsterisk().call(srv.port, default_env("stuck")))
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(srv.stop(timeout_s=0.2), 5)
    peer = await asyncio.wait_for(peer_task, 5)
    assert srv.active_requests == 0
    assert peer.fallback_sent()  # even a cancelled request leaves the caller somewhere
