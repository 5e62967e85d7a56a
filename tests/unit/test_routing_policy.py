from datetime import UTC, datetime, timedelta

from callcenter.routing.policy import (
    AgentInfo,
    WaitingCall,
    next_call,
    order_waiting,
    parse_priority,
    pick_agent,
    queue_stats,
)

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def agent(
    agent_id: str,
    skills: tuple[str, ...] = ("repair",),
    state: str = "available",
    idle_s: float = 0.0,
    priority: int = 0,
) -> AgentInfo:
    return AgentInfo(
        id=agent_id,
        name=agent_id,
        endpoint=f"PJSIP/{agent_id}",
        skills=skills,
        state=state,  # type: ignore[arg-type]
        idle_since=NOW - timedelta(seconds=idle_s),
        priority=priority,
    )


def call(call_id: str, queue: str = "repair", priority: int = 0, wait_s: float = 0.0, tried=()):
    return WaitingCall(
        call_id=call_id,
        queue=queue,
        priority=priority,
        queued_at=NOW - timedelta(seconds=wait_s),
        tried_agents=frozenset(tried),
    )


def test_pick_agent_longest_idle_with_skill():
    agents = [
        agent("a", idle_s=10),
        agent("b", idle_s=60),
        agent("c", skills=("complaint",), idle_s=600),
    ]
    assert pick_agent("repair", agents, NOW).id == "b"
    assert pick_agent("complaint", agents, NOW).id == "c"
    assert pick_agent("consultation", agents, NOW) is None


def test_pick_agent_only_available():
    agents = [
        agent("a", state="busy", idle_s=100),
        agent("b", state="ringing", idle_s=100),
        agent("c", state="wrap_up", idle_s=100),
        agent("d", state="logged_out", idle_s=100),
        agent("e", state="paused", idle_s=100),
    ]
    assert pick_agent("repair", agents, NOW) is None
    agents.append(agent("f", idle_s=1))
    assert pick_agent("repair", agents, NOW).id == "f"


def test_general_queue_accepts_any_agent():
    agents = [agent("a", skills=("complaint",), idle_s=5), agent("b", skills=(), idle_s=50)]
    assert pick_agent("general", agents, NOW).id == "b"


def test_pick_agent_exclude_and_priority():
    agents = [agent("a", idle_s=100), agent("b", idle_s=10), agent("c", idle_s=1, priority=5)]
    assert pick_agent("repair", agents, NOW).id == "c"
    assert pick_agent("repair", agents, NOW, exclude={"c"}).id == "a"
    assert pick_agent("repair", agents, NOW, exclude={"a", "b", "c"}) is None


def test_agent_without_idle_since_counts_as_longest_idle():
    fresh = AgentInfo("z", "z", "PJSIP/z", ("repair",), "available", None)
    assert pick_agent("repair", [agent("a", idle_s=999), fresh], NOW).id == "z"


def test_next_call_priority_then_wait():
    a = agent("a", skills=("repair", "complaint"))
    waiting = [
        call("old", wait_s=300),
        call("vip", priority=5, wait_s=10),
        call("p1", priority=9, wait_s=1),
        call("other", queue="consultation", priority=99, wait_s=999),
    ]
    assert next_call(waiting, a, NOW).call_id == "p1"
    assert next_call([w for w in waiting if w.call_id != "p1"], a, NOW).call_id == "vip"
    assert next_call([call("x", wait_s=5), call("y", wait_s=50)], a, NOW).call_id == "y"
    assert next_call([call("c", queue="consultation")], a, NOW) is None


def test_next_call_general_and_tried_last():
    a = agent("a", skills=("repair",))
    assert next_call([call("g", queue="general")], a, NOW).call_id == "g"
    waiting = [call("t", priority=9, tried={"a"}), call("u", priority=1)]
    assert next_call(waiting, a, NOW).call_id == "u"
    assert next_call(waiting[:1], a, NOW).call_id == "t"


def test_order_waiting():
    waiting = [call("a", wait_s=5), call("b", priority=2), call("c", wait_s=50)]
    assert [w.call_id for w in order_waiting(waiting)] == ["b", "c", "a"]


def test_queue_stats():
    agents = [
        agent("a", skills=("repair",)),
        agent("b", skills=("repair",), state="busy"),
        agent("c", skills=("complaint",), state="logged_out"),
    ]
    waiting = [call("x", wait_s=12.34), call("y", wait_s=3), call("z", queue="complaint")]
    stats = queue_stats(("repair", "complaint", "general"), waiting, agents, NOW)
    assert stats["repair"] == {
        "waiting": 2,
        "longest_wait_s": 12.3,
        "agents_available": 1,
        "agents_busy": 1,
        "agents_logged_in": 2,
    }
    assert stats["complaint"]["waiting"] == 1
    assert stats["complaint"]["agents_available"] == 0
    assert stats["general"]["agents_available"] == 1
    assert stats["general"]["waiting"] == 0
    assert stats["general"]["longest_wait_s"] == 0.0


def test_parse_priority():
    assert parse_priority("3") == 3
    assert parse_priority(" 10 ") == 10
    assert parse_priority("") == 0
    assert parse_priority(None) == 0
    assert parse_priority("vip", default=1) == 1
