"""The ACD machine through every transition, without sockets or clocks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callcenter.acd import commands as cmd
from callcenter.acd import events as ev
from callcenter.acd.machine import CallState, Machine
from callcenter.acd.queues import parse_queues

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

QUEUES = parse_queues({
    "defaults": {"announce_every_s": 30, "max_wait_s": 120},
    "queues": {
        "repair": {"skills": {"repair": 1}, "on_max_wait": "overflow:general"},
        "complaint": {"skills": {"complaint": 1}, "when_no_agents": "callback"},
        "rr": {"skills": {"repair": 1}, "strategy": "round_robin"},
        "few": {"skills": {"repair": 1}, "strategy": "fewest_calls"},
        "all": {"skills": {"repair": 1}, "strategy": "ring_all"},
        "rand": {"skills": {"repair": 1}, "strategy": "random"},
        "general": {"max_wait_s": 60},
    },
})


class Harness:
    def __init__(self, **kwargs: Any) -> None:
        self.m = Machine(QUEUES, ring_timeout_s=15, ring_grace_s=3, wrap_up_s=5,
                         rng=random.Random(1), **kwargs)
        self.now = T0
        self.out: list[cmd.Command] = []
        self.specs: dict[str, ev.AgentSpec] = {}

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now

    def feed(self, event: ev.Event) -> list[cmd.Command]:
        out = self.m.handle(event)
        self.out.extend(out)
        return out

    def agents(self, *specs: tuple[str, dict[str, int]], state: str = "available") -> None:
        for aid, skills in specs:  # a load names every agent the store has
            self.specs[aid] = ev.AgentSpec(aid, aid, f"PJSIP/{aid}", skills, state, None, self.now)
        self.feed(ev.AgentsLoaded(self.now, tuple(self.specs.values()), adopt_state=True))

    def arrive(self, call_id: str, queue: str = "repair", priority: int = 0,
               t: float | None = None) -> list[cmd.Command]:
        return self.feed(ev.CallerArrived(self.at(t) if t is not None else self.now,
                                          f"ch-{call_id}", f"PJSIP/trunk-{call_id}", call_id,
                                          "13800000000", queue, priority, answered=True))

    def answer(self, channel_id: str, call_id: str, t: float | None = None) -> list[cmd.Command]:
        return self.feed(ev.AgentAnswered(self.at(t) if t is not None else self.now, channel_id,
                                          call_id))

    def gone(self, channel_id: str, t: float | None = None, cause: int | None = None,
             destroyed: bool = True) -> list[cmd.Command]:
        return self.feed(ev.ChannelGone(self.at(t) if t is not None else self.now, channel_id,
                                        cause, destroyed))

    def timer(self, *key: str, t: float | None = None) -> list[cmd.Command]:
        return self.feed(ev.TimerFired(self.at(t) if t is not None else self.now, key))

    def state(self, agent_id: str) -> tuple[str, str | None]:
        agent = self.m.agents[agent_id]
        return agent.state, agent.reason


def of(kind: type, commands: list[cmd.Command]) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def writes(commands: list[cmd.Command], method: str) -> list[cmd.Write]:
    return [c for c in of(cmd.Write, commands) if c.method == method]


REPAIR = {"repair": 1}


def test_caller_queued_with_moh_timers_and_event_time() -> None:
    h = Harness()
    out = h.arrive("c1", t=10)
    assert of(cmd.StartMoh, out)[0].channel_id == "ch-c1"
    keys = {c.key for c in of(cmd.StartTimer, out)}
    assert keys == {("max_wait", "c1"), ("announce", "c1")}
    update = writes(out, "update_call")[0]
    assert update.kwargs["queued_at"] == T0 + timedelta(seconds=10)  # the event's time
    assert update.kwargs["stage"] == "queue"
    assert not of(cmd.Answer, out)  # the IVR answered already


def test_unknown_queue_goes_to_general_and_unanswered_channel_is_answered() -> None:
    h = Harness()
    out = h.feed(ev.CallerArrived(T0, "ch-x", "n", "x", "", "nonsense", 0, answered=False))
    assert of(cmd.Answer, out)
    assert h.m.calls["x"].queue == "general"


def test_longest_idle_agent_is_rung_and_answer_bridges_and_records() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    h.at(5)
    h.agents(("a2", REPAIR))  # a1 idle since 0, a2 known since 5 -> a1 is the longest idle
    out = h.arrive("c1", t=10)
    originate = of(cmd.Originate, out)
    assert [o.agent_id for o in originate] == ["a1"]
    assert h.state("a1") == ("ringing", None)
    assert writes(out, "update_call")[-1].kwargs["ringing_at"] == h.now
    out = h.answer(originate[0].channel_id, "c1", t=14)
    assert of(cmd.StopMoh, out)
    bridge = of(cmd.Bridge, out)[0]
    assert bridge.channel_ids == ("ch-c1", originate[0].channel_id)
    assert {c.name for c in of(cmd.SetVar, out)} == {"CC_BRIDGED"}
    legs = writes(out, "add_leg")
    assert {w.args[1] for w in legs} == {"caller", "agent"}
    assert all(w.kwargs["started_at"] == h.now for w in legs)
    assert writes(out, "update_call")[0].kwargs["answered_at"] == T0 + timedelta(seconds=14)
    assert h.state("a1") == ("on_call", None)
    assert {c.key for c in of(cmd.CancelTimer, out)} >= {("ring", "c1"), ("max_wait", "c1")}


def test_caller_hangs_up_in_conversation_wrap_up_then_available() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    agent_ch = of(cmd.Originate, h.arrive("c1"))[0].channel_id
    h.answer(agent_ch, "c1", t=3)
    out = h.gone("ch-c1", t=60)
    assert [c.channel_id for c in of(cmd.Hangup, out)] == [agent_ch]
    assert of(cmd.DestroyBridge, out)
    assert h.state("a1") == ("wrap_up", None)
    assert not writes(out, "finish_call")  # waits for the agent channel (recording) to close
    out = h.gone(agent_ch, t=60.1)
    finish = writes(out, "finish_call")[0]
    assert finish.kwargs == {"stage": "conversation", "hangup_by": "caller",
                             "ended_at": T0 + timedelta(seconds=60), "outcome": "answered"}
    assert "c1" not in h.m.calls
    out = h.timer("wrap_up", "a1", t=65)
    assert h.state("a1") == ("available", None)


def test_survey_sends_the_caller_on_and_ends_the_call_without_hanging_them_up() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    agent_ch = of(cmd.Originate, h.arrive("c1"))[0].channel_id
    h.answer(agent_ch, "c1", t=3)
    out = h.feed(ev.AgentRequest(h.now, "a1", "survey"))
    assert of(cmd.ContinueInDialplan, out) == [
        cmd.ContinueInDialplan("c1", "ch-c1", "hotline-survey")]
    assert not of(cmd.ContinueInDialplan, h.feed(ev.AgentRequest(h.now, "a1", "survey")))
    out = h.feed(ev.ChannelGone(h.now, "ch-c1", None, destroyed=False))  # StasisEnd
    assert [c.channel_id for c in of(cmd.Hangup, out)] == [agent_ch]  # never the caller
    assert h.state("a1") == ("wrap_up", None)
    finish = writes(h.gone(agent_ch), "finish_call")[0]
    assert (finish.kwargs["hangup_by"], finish.kwargs["outcome"]) == (None, "answered")


def test_survey_without_a_conversation_does_nothing() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    assert not of(cmd.ContinueInDialplan, h.feed(ev.AgentRequest(h.now, "a1", "survey")))


def test_agent_on_call_is_never_offered_another_call() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    agent_ch = of(cmd.Originate, h.arrive("c1"))[0].channel_id
    h.answer(agent_ch, "c1")
    assert not of(cmd.Originate, h.arrive("c2"))
    h.gone("ch-c1")
    assert not of(cmd.Originate, h.out[-10:])  # wrap-up first
    out = h.timer("wrap_up", "a1")
    assert [o.call_id for o in of(cmd.Originate, out)] == ["c2"]


def test_agent_hangs_up_first() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    agent_ch = of(cmd.Originate, h.arrive("c1"))[0].channel_id
    h.answer(agent_ch, "c1")
    out = h.gone(agent_ch, destroyed=True)
    assert [c.channel_id for c in of(cmd.Hangup, out)] == ["ch-c1"]
    assert writes(out, "finish_call")[0].kwargs["hangup_by"] == "agent"


def test_no_answer_pauses_agent_and_rings_the_next() -> None:
    h = Harness()
    h.agents(("silent", REPAIR))
    h.at(1)
    h.agents(("good", REPAIR))
    first = of(cmd.Originate, h.arrive("c1", t=2))[0]
    assert first.agent_id == "silent"
    out = h.gone(first.channel_id, t=17, cause=19)
    assert h.state("silent") == ("paused", "no_answer")
    nxt = of(cmd.Originate, out)
    assert [o.agent_id for o in nxt] == ["good"]
    history = [w for w in of(cmd.Write, out) if w.method == "record_agent_state"]
    assert history[0].kwargs["from_state"] == "ringing"
    assert history[0].kwargs["to_state"] == "paused"
    assert history[0].kwargs["reason"] == "no_answer"


def test_ring_timeout_hangs_up_the_offer() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1"))[0]
    out = h.timer("ring", "c1", t=18)
    assert [c.channel_id for c in of(cmd.Hangup, out)] == [offer.channel_id]
    assert h.state("a1") == ("paused", "no_answer")
    assert h.m.calls["c1"].state == CallState.QUEUED
    assert h.gone(offer.channel_id) == []  # the echo of our own hang-up changes nothing


def test_unreachable_phone_is_paused_unreachable() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1"))[0]
    h.feed(ev.CommandFailed(h.now, offer, gone=False, error="400"))
    assert h.state("a1") == ("paused", "unreachable")


def test_priority_first_then_fifo() -> None:
    h = Harness()
    h.arrive("old", t=0)
    h.arrive("new", t=5)
    h.arrive("p1", priority=10, t=9)
    h.arrive("older-vip", priority=5, t=1)
    out = []
    h.agents(("a1", REPAIR), ("a2", REPAIR), ("a3", REPAIR), ("a4", REPAIR))
    out = of(cmd.Originate, h.out)
    assert [o.call_id for o in out] == ["p1", "older-vip", "old", "new"]


def test_a_call_nobody_can_take_does_not_block_others() -> None:
    h = Harness()
    h.arrive("complaint", queue="complaint", priority=9)  # nobody has the skill
    h.agents(("r", REPAIR), ("c", {"complaint": 1}), state="logged_out")
    h.feed(ev.AgentRequest(h.now, "r", "login"))
    out = h.arrive("repair", queue="repair")
    assert [o.call_id for o in of(cmd.Originate, out)] == ["repair"]


def test_skill_level_preferred() -> None:
    h = Harness()
    h.agents(("novice", {"repair": 1}))
    h.at(1)
    h.agents(("expert", {"repair": 5}))
    out = h.arrive("c1", t=2)
    assert of(cmd.Originate, out)[0].agent_id == "expert"


def test_round_robin_rotates() -> None:
    h = Harness()
    h.agents(("a", REPAIR), ("b", REPAIR), ("c", REPAIR))
    picked = []
    for n in range(4):
        out = h.arrive(f"c{n}", queue="rr")
        offer = of(cmd.Originate, out)[0]
        picked.append(offer.agent_id)
        h.answer(offer.channel_id, f"c{n}")
        h.gone(f"ch-c{n}")
        h.gone(offer.channel_id)
        h.timer("wrap_up", offer.agent_id)
    assert picked == ["a", "b", "c", "a"]


def test_fewest_calls() -> None:
    h = Harness()
    h.agents(("a", REPAIR), ("b", REPAIR))
    h.m.agents["a"].calls_answered = 3
    out = h.arrive("c1", queue="few")
    assert of(cmd.Originate, out)[0].agent_id == "b"


def test_random_is_from_the_injected_rng() -> None:
    h = Harness()
    h.agents(("a", REPAIR), ("b", REPAIR), ("c", REPAIR))
    out = h.arrive("c1", queue="rand")
    assert of(cmd.Originate, out)[0].agent_id in {"a", "b", "c"}


def test_ring_all_first_answer_wins_others_released() -> None:
    h = Harness()
    h.agents(("a", REPAIR), ("b", REPAIR))
    offers = of(cmd.Originate, h.arrive("c1", queue="all"))
    assert {o.agent_id for o in offers} == {"a", "b"}
    winner, loser = offers
    out = h.answer(winner.channel_id, "c1")
    assert loser.channel_id in [c.channel_id for c in of(cmd.Hangup, out)]
    assert h.state(winner.agent_id)[0] == "on_call"
    assert h.state(loser.agent_id) == ("available", None)
    out = h.answer(loser.channel_id, "c1")  # answered a moment too late
    assert [c.channel_id for c in of(cmd.Hangup, out)] == [loser.channel_id]


def test_abandoned_in_queue() -> None:
    h = Harness()
    h.arrive("c1", t=0)
    out = h.gone("ch-c1", t=12)
    finish = writes(out, "finish_call")[0]
    assert finish.kwargs["stage"] == "queue"
    assert finish.kwargs["outcome"] == "abandoned"
    assert finish.kwargs["ended_at"] == T0 + timedelta(seconds=12)


def test_caller_hangs_up_while_agent_rings() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1"))[0]
    out = h.gone("ch-c1")
    assert offer.channel_id in [c.channel_id for c in of(cmd.Hangup, out)]
    assert h.state("a1") == ("available", None)  # not the agent's fault
    assert writes(out, "finish_call")[0].kwargs["stage"] == "ringing"


def test_max_wait_overflows_then_calls_back() -> None:
    h = Harness()
    h.arrive("c1", queue="repair", t=0)
    out = h.timer("max_wait", "c1", t=120)
    assert h.m.calls["c1"].queue == "general"
    assert writes(out, "update_call")[0].kwargs == {"queue": "general"}
    out = h.timer("max_wait", "c1", t=180)
    assert h.m.calls["c1"].state == CallState.CALLBACK
    play = of(cmd.Play, out)[0]
    assert play.media == ("sound:callcenter/callback",)
    out = h.feed(ev.PlaybackFinished(h.at(185), play.playback_id))
    assert [c.channel_id for c in of(cmd.Hangup, out)] == ["ch-c1"]
    finish = writes(out, "finish_call")[0]
    assert finish.kwargs["outcome"] == "callback" and finish.kwargs["stage"] == "queue"


def test_max_wait_while_ringing_waits_for_the_ring_to_end() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1", queue="general"))[0]
    h.timer("max_wait", "c1", t=60)
    assert h.m.calls["c1"].state == CallState.RINGING
    h.gone(offer.channel_id, t=61)
    assert h.m.calls["c1"].state == CallState.CALLBACK


def test_empty_queue_rule() -> None:
    h = Harness()
    out = h.arrive("c1", queue="complaint")
    assert h.m.calls["c1"].state == CallState.CALLBACK
    assert of(cmd.Play, out)


def test_announcement_position_and_wait_then_moh() -> None:
    h = Harness()
    h.agents(("a1", {"complaint": 1}), state="paused")  # logged in, so no call-back
    h.arrive("c1", t=0)
    h.arrive("c2", t=1)
    out = h.timer("announce", "c2", t=30)
    play = of(cmd.Play, out)[0]
    assert play.media[1] == "sound:callcenter/num_2"
    assert of(cmd.StopMoh, out)
    assert ("announce", "c2") in [c.key for c in of(cmd.StartTimer, out)]
    out = h.feed(ev.PlaybackFinished(h.now, play.playback_id))
    assert of(cmd.StartMoh, out)


def test_moh_failure_falls_back_to_ringback() -> None:
    h = Harness()
    moh = of(cmd.StartMoh, h.arrive("c1"))[0]
    out = h.feed(ev.CommandFailed(h.now, moh, gone=False, error="500"))
    assert of(cmd.StartRinging, out)


def test_pause_during_call_applies_after_wrap_up() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1"))[0]
    h.answer(offer.channel_id, "c1")
    h.feed(ev.AgentRequest(h.now, "a1", "pause", "lunch"))
    assert h.state("a1") == ("on_call", None)
    h.gone("ch-c1")
    h.timer("wrap_up", "a1")
    assert h.state("a1") == ("paused", "lunch")
    h.feed(ev.AgentRequest(h.now, "a1", "unpause"))
    assert h.state("a1") == ("available", None)


def test_ready_ends_wrap_up_early_and_logout_while_ringing_requeues() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1"))[0]
    h.answer(offer.channel_id, "c1")
    h.gone("ch-c1")
    assert h.state("a1")[0] == "wrap_up"
    h.feed(ev.AgentRequest(h.now, "a1", "ready"))
    assert h.state("a1")[0] == "available"
    offer = of(cmd.Originate, h.arrive("c2"))[0]
    out = h.feed(ev.AgentRequest(h.now, "a1", "logout"))
    assert offer.channel_id in [c.channel_id for c in of(cmd.Hangup, out)]
    assert h.state("a1")[0] == "logged_out"
    assert h.m.calls["c2"].state == CallState.QUEUED


def test_bridge_failure_ends_the_call() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1"))[0]
    bridge = of(cmd.Bridge, h.answer(offer.channel_id, "c1"))[0]
    out = h.feed(ev.CommandFailed(h.now, bridge, gone=False, error="500"))
    assert {c.channel_id for c in of(cmd.Hangup, out)} == {"ch-c1", offer.channel_id}


def test_agent_channel_unwanted_is_hung_up() -> None:
    h = Harness()
    out = h.answer("stray-agent-1", "nosuchcall")
    assert [c.channel_id for c in of(cmd.Hangup, out)] == ["stray-agent-1"]


def test_settle_timer_finishes_when_the_agent_channel_never_reports() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1"))[0]
    h.answer(offer.channel_id, "c1")
    h.gone("ch-c1")
    out = h.timer("settle", "c1")
    assert writes(out, "finish_call")


def test_reconcile_after_restart() -> None:
    h = Harness()
    h.agents(("a1", REPAIR), ("a2", REPAIR))
    h.m.agents["a1"].state = "on_call"  # as persisted before the restart
    h.m.agents["a2"].state = "ringing"
    live = {
        "waiting": ev.LiveChannel("waiting", "PJSIP/x", "Up", "1",
                                  ("inbound", "w1", "repair", "0")),
        "talk": ev.LiveChannel("talk", "PJSIP/y", "Up", "2", ("inbound", "t1", "repair", "0")),
        "t1-agent-1": ev.LiveChannel("t1-agent-1", "PJSIP/a1", "Up", "", ("agent", "t1")),
        "orphan": ev.LiveChannel("orphan", "Local/x", "Up", "", ("agent", "zzz")),
    }
    rows = (
        ev.ActiveRow("w1", "queue", "waiting", "repair", 0, "1", T0 - timedelta(seconds=30),
                     None, None, None),
        ev.ActiveRow("t1", "conversation", "talk", "repair", 0, "2", T0, "a1", "t1-agent-1", T0),
        ev.ActiveRow("gone", "ringing", "left", "repair", 0, "3", T0, "a2", None, None),
        ev.ActiveRow("ivr", "menu", "ivr-left", "", 0, "4", None, None, None, None),
    )
    out = h.feed(ev.Reconcile(h.at(100), live, rows))
    assert h.m.calls["w1"].queued_at == T0 - timedelta(seconds=30)  # its wait still counts
    assert h.m.calls["t1"].state == CallState.CONNECTED
    assert h.state("a1")[0] == "on_call"
    finished = {w.args[0]: w.kwargs["stage"] for w in writes(out, "finish_call")}
    assert finished == {"gone": "ringing", "ivr": "menu"}
    assert "orphan" in [c.channel_id for c in of(cmd.Hangup, out)]
    # a2 rang for a call that is gone: free again, and takes the waiting caller.
    assert [o.call_id for o in of(cmd.Originate, out)] == ["w1"]


def test_reconcile_ends_tracked_calls_whose_channels_vanished() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    offer = of(cmd.Originate, h.arrive("c1"))[0]
    h.answer(offer.channel_id, "c1")
    live = {"ch-c1": ev.LiveChannel("ch-c1", "x", "Up", "", ("inbound", "c1", "repair", "0"))}
    out = h.feed(ev.Reconcile(h.now, live, ()))
    assert writes(out, "finish_call")[0].kwargs["hangup_by"] == "agent"


def test_snapshot_figures() -> None:
    from callcenter.acd.figures import live_snapshot

    h = Harness()
    h.agents(("a1", REPAIR))
    h.arrive("c1", t=0)
    h.arrive("c2", t=10)
    snap = live_snapshot(h.m, T0 + timedelta(seconds=40))
    repair = snap["queues"]["repair"]
    assert repair["waiting"] == 2  # one ringing, one queued: both still wait
    assert repair["longest_wait_s"] == 40.0
    assert repair["agents"]["ringing"] == 1
    assert snap["calls"] == {"queued": 1, "ringing": 1, "conversation": 0, "callback": 0}


@pytest.mark.parametrize("text", ["overflow:", "sometimes", "overflow:nowhere"])
def test_bad_queue_rules_are_refused(text: str) -> None:
    from callcenter.acd.queues import QueueConfigError

    with pytest.raises(QueueConfigError):
        parse_queues({"queues": {"general": {}, "q": {"on_max_wait": text}}})


def test_shipped_queues_file_loads() -> None:
    from callcenter.acd.queues import load_queues
    from callcenter.constants import QUEUES as IVR_QUEUES

    queues = load_queues()
    assert set(IVR_QUEUES) <= set(queues)


def test_a_fallback_caller_without_the_ivrs_id_gets_the_same_derived_id() -> None:
    from callcenter.core import call_id_for_channel

    h = Harness()
    h.feed(ev.CallerArrived(T0, "1700000000.5", "PJSIP/x", "", "1", "general", 0,
                            answered=True, kind="fallback"))
    assert call_id_for_channel("1700000000.5") in h.m.calls


def test_an_offer_prefers_the_agent_s_browser_softphone() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    [offer] = of(cmd.Originate, h.arrive("c1", t=1))
    assert (offer.endpoint, offer.prefer) == ("PJSIP/a1", "PJSIP/a1-web")


def test_agent_view_shows_the_offer_and_the_wrap_up_time_left() -> None:
    from callcenter.acd.figures import agent_view

    h = Harness()
    h.agents(("a1", REPAIR))
    [offer] = of(cmd.Originate, h.arrive("c1", t=1))
    view = agent_view(h.m, "a1", h.now)
    assert view is not None and view["state"] == "ringing"
    assert view["call"]["call_id"] == "c1" and view["call"]["ringing"]
    assert view["queues"]["repair"]["waiting"] == 1  # still waiting while it rings
    h.answer(offer.channel_id, "c1", t=2)
    h.gone("ch-c1", t=10)
    view = agent_view(h.m, "a1", h.at(12))
    assert view is not None and view["state"] == "wrap_up"
    assert view["wrap_up"]["call_id"] == "c1" and view["wrap_up"]["seconds_left"] == 3.0
    assert agent_view(h.m, "nobody", h.now) is None


def test_an_agent_leaves_and_joins_one_queue() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    out = h.feed(ev.AgentRequest(h.at(1), "a1", "leave", "repair", "web:a1"))
    assert writes(out, "set_agent_queues_off")[0].kwargs == {"queues": ["repair"]}
    assert not of(cmd.Originate, h.arrive("c1", t=2))  # out of repair: not offered
    assert h.state("a1") == ("available", None)
    out = h.feed(ev.AgentRequest(h.at(3), "a1", "join", "repair", "web:a1"))
    assert writes(out, "set_agent_queues_off")[0].kwargs == {"queues": []}
    assert [o.agent_id for o in of(cmd.Originate, out)] == ["a1"]  # the waiting call now
    assert not h.feed(ev.AgentRequest(h.at(4), "a1", "leave", "nowhere", "web:a1"))


def test_a_reload_of_agent_definitions_keeps_the_queues_an_agent_left() -> None:
    h = Harness()
    h.agents(("a1", REPAIR))
    h.feed(ev.AgentRequest(h.at(1), "a1", "leave", "repair", "web:a1"))
    h.agents(("a1", REPAIR))  # read before the leave was written: no queues off there
    assert not of(cmd.Originate, h.arrive("c1", t=2))  # still out of repair
