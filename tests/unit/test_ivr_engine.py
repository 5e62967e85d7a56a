"""The pure IVR engine: events in, actions out, driven by menu.yaml's menus."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from callcenter.constants import QUEUES
from callcenter.ivr.engine import (
    NODE_DESCRIBE,
    NODE_SILENT,
    CallerIdentified,
    DescriptionRecorded,
    DigitPressed,
    HangUp,
    MenuEngine,
    NoInput,
    PlayAndListen,
    RecordDescription,
    RouteToOnCall,
    RouteToQueue,
    SpeechRecognised,
)
from callcenter.ivr.menu import MAX_OPTIONS, MENU_PATH, default_menu, menu_from_dict

MENU = default_menu()
SAFETY = MENU.priority["safety"]
VIP = MENU.priority["vip"]


def route(action: object) -> RouteToQueue:
    assert isinstance(action, RouteToQueue), action
    return action


def listen(action: object) -> PlayAndListen:
    assert isinstance(action, PlayAndListen), action
    return action


def walk(*events: object, engine: MenuEngine | None = None) -> tuple[MenuEngine, object]:
    engine = engine or MenuEngine()
    action: object = engine.start()
    for event in events:
        action = engine.handle(event)  # type: ignore[arg-type]
    return engine, action


def raw_menu() -> dict[str, Any]:
    with open(MENU_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# -- the menu file -------------------------------------------------------------


def test_menu_file_follows_the_spec() -> None:
    main = {o.key: (o.choice, o.queue or o.next) for o in MENU.main.options}
    assert main == {"1": ("repair", "repair"), "2": ("complaint", "complaint"),
                    "3": ("consultation", "consultation"), "0": ("agent", "general"),
                    "9": ("repeat", "")}
    for node in MENU.menus.values():
        assert len(node.options) <= MAX_OPTIONS
        assert node.by_choice("agent") is not None, node.name  # a person from every menu
        assert all(o.queue in QUEUES for o in node.options if o.queue)
    assert MENU.safety_key_paths() == frozenset({"11"})
    assert SAFETY > VIP > MENU.priority["normal"]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda m: m["menus"]["main"]["options"].pop(3), "no option for a person"),
    (lambda m: m["menus"]["main"]["options"].append({"key": "5", "choice": "repair",
                                                     "queue": "repair"}), "at most 5"),
    (lambda m: m["menus"]["main"]["options"][1].update(queue="nowhere"), "unknown queue"),
    (lambda m: m["menus"]["main"]["options"][0].update(next="nowhere"), "unknown menu"),
    (lambda m: m["menus"]["main"]["options"][1].update(key="x"), "not a DTMF key"),
    (lambda m: m["prompts"].pop("silent_goodbye"), "'silent_goodbye' has no text"),
    (lambda m: m["menus"]["repair"]["options"].pop(0), "no menu offers the emergency"),
])
def test_invalid_menu_files_are_refused_with_the_reason(change: Any, problem: str) -> None:
    data = copy.deepcopy(raw_menu())
    change(data)
    with pytest.raises(ValueError, match=problem):
        menu_from_dict(data)


# -- keys -------------------------------------------------------------------------


def test_start_plays_welcome_and_main_menu_then_listens() -> None:
    engine = MenuEngine()
    action = listen(engine.start())
    assert action.prompts == ("welcome", "main")
    assert (action.node, action.stage, action.grammar) == ("main", "greeting", "main")
    assert engine.start() is action


@pytest.mark.parametrize(("keys", "queue", "choice", "priority"), [
    ("3", "consultation", "consultation", 0),
    ("0", "general", "agent", 0),
    ("11", "repair", "emergency", SAFETY),
    ("10", "general", "agent", 0),
])
def test_keys_route_to_their_queue(keys: str, queue: str, choice: str, priority: int) -> None:
    _, action = walk(*(DigitPressed(k) for k in keys))
    r = route(action)
    assert (r.queue, r.choice, r.digits, r.priority, r.reason) == (
        queue, choice, keys, priority, "choice")


def test_agent_choice_is_announced() -> None:
    assert route(walk(DigitPressed("0"))[1]).announce == ("transfer_agent",)
    assert route(walk(DigitPressed("3"))[1]).announce == ()


def test_repair_opens_the_sub_menu_and_other_repair_records_a_description() -> None:
    engine, action = walk(DigitPressed("1"))
    assert listen(action).prompts == ("repair",) and listen(action).grammar == "repair"
    action = engine.handle(DigitPressed("2"))
    assert isinstance(action, RecordDescription) and action.node == NODE_DESCRIBE
    assert engine.handle(DigitPressed("5")) is action  # keys during the description: its own
    r = route(engine.handle(DescriptionRecorded("ivr/x/description.wav", 4000)))
    assert (r.queue, r.choice, r.digits, r.description) == (
        "repair", "repair", "12", "ivr/x/description.wav")


def test_complaint_records_a_description_even_if_nothing_was_said() -> None:
    engine, action = walk(DigitPressed("2"))
    assert isinstance(action, RecordDescription)
    r = route(engine.handle(DescriptionRecorded()))
    assert (r.queue, r.description) == ("complaint", "")


def test_repeat_and_back_do_not_count_as_failures() -> None:
    engine, action = walk(DigitPressed("9"))
    assert listen(action).prompts == ("main",) and engine.failed_tries == 0
    action = engine.handle(DigitPressed("1"))
    assert listen(action).node == "repair"
    action = engine.handle(DigitPressed("*"))
    assert listen(action).node == "main" and engine.failed_tries == 0
    r = route(engine.handle(DigitPressed("3")))
    assert r.digits == "3"  # the path left by "back" is not part of the route


def test_invalid_keys_apologise_then_reach_a_person_never_a_hang_up() -> None:
    engine, action = walk(DigitPressed("7"))
    assert listen(action).prompts == ("invalid", "main")
    action = engine.handle(DigitPressed("8"))
    r = route(engine.handle(DigitPressed("#")))
    assert (r.queue, r.choice, r.reason) == ("general", "agent", "fallback")
    assert r.announce == ("transfer_agent",)


def test_failures_in_the_repair_menu_reach_a_repair_agent() -> None:
    _, action = walk(DigitPressed("1"), NoInput(), NoInput(), NoInput())
    r = route(action)
    assert (r.queue, r.reason) == ("repair", "fallback")


def test_no_input_after_a_key_replays_the_menu_then_a_person() -> None:
    engine, action = walk(DigitPressed("7"), NoInput())
    assert listen(action).prompts == ("main",)
    assert route(engine.handle(NoInput())).reason == "fallback"


def test_endless_repeat_is_bounded() -> None:
    engine = MenuEngine()
    engine.start()
    action: object = None
    for _ in range(20):
        action = engine.handle(DigitPressed("9"))
        if isinstance(action, RouteToQueue):
            break
    assert route(action).reason == "fallback"
    assert engine.prompts_played == MENU.timing.max_prompts


# -- speech -----------------------------------------------------------------------


@pytest.mark.parametrize(("choice", "queue"), [
    ("consultation", "consultation"), ("agent", "general")])
def test_spoken_choices_route(choice: str, queue: str) -> None:
    r = route(walk(SpeechRecognised(choice, 0.9, "..."))[1])
    assert (r.queue, r.choice, r.digits) == (queue, choice, "")


@pytest.mark.parametrize("emergency", ["gas_leak", "fire", "flooding", "lift_trapped"])
def test_an_emergency_named_at_the_main_menu_is_p1_at_once(emergency: str) -> None:
    r = route(walk(SpeechRecognised(emergency))[1])
    assert (r.queue, r.choice, r.priority) == ("repair", emergency, SAFETY)


def test_spoken_repair_opens_the_sub_menu_and_generic_emergency_there_is_p1() -> None:
    engine, action = walk(SpeechRecognised("repair"))
    assert listen(action).node == "repair"
    r = route(engine.handle(SpeechRecognised("emergency")))
    assert (r.priority, r.digits) == (SAFETY, "")


def test_speech_that_is_no_choice_is_not_understood_and_counts_as_a_try() -> None:
    engine, action = walk(SpeechRecognised("none"))
    assert listen(action).prompts == ("not_understood", "main")
    assert engine.failed_tries == 1
    assert listen(engine.handle(SpeechRecognised("back"))).prompts == ("main",)


# -- the silent line (spec section 3) --------------------------------------------


def test_silent_caller_hears_the_spec_script_and_is_hung_up() -> None:
    engine, action = walk(NoInput())
    wait = MENU.timing.silent_wait_ms
    first = listen(action)
    assert (first.prompts, first.node, first.timeout_ms) == (("silent_hello",), NODE_SILENT, wait)
    second = listen(engine.handle(NoInput()))
    assert second.prompts == ("silent_hello",)
    third = listen(engine.handle(NoInput()))
    assert third.prompts == ("silent_goodbye",) and third.timeout_ms == wait
    end = engine.handle(NoInput())
    assert isinstance(end, HangUp) and end.reason == "silent_line" and end.prompts == ()


def test_a_caller_who_speaks_up_during_the_script_is_served() -> None:
    engine, _ = walk(NoInput(), NoInput())
    assert route(engine.handle(DigitPressed("3"))).queue == "consultation"


def test_a_caller_who_pressed_anything_is_never_hung_up_on() -> None:
    engine = MenuEngine()
    engine.start()
    engine.handle(DigitPressed("7"))
    for _ in range(10):
        action = engine.handle(NoInput())
        assert not isinstance(action, HangUp)
        if isinstance(action, RouteToQueue):
            break
    assert route(action).choice == "agent"


# -- callers, hours ----------------------------------------------------------------


def test_vip_caller_is_offered_the_agent_key_first_and_raised() -> None:
    engine = MenuEngine()
    engine.handle(CallerIdentified(known=True, vip="elderly"))
    assert listen(engine.pending).prompts == ("welcome", "vip_offer", "main")
    assert route(engine.handle(DigitPressed("0"))).priority == VIP
    engine = MenuEngine()
    engine.handle(CallerIdentified(known=True, vip="elderly"))
    assert route(walk(DigitPressed("1"), DigitPressed("1"), engine=engine)[1]).priority == SAFETY


def test_known_non_vip_and_unknown_callers_are_normal() -> None:
    for event in (CallerIdentified(known=True), CallerIdentified(known=False, vip="elderly")):
        engine = MenuEngine()
        engine.handle(event)
        assert listen(engine.pending).prompts == ("welcome", "main")
        assert route(engine.handle(DigitPressed("3"))).priority == 0


def test_closed_queue_takes_a_message_and_ends_for_a_call_back() -> None:
    engine = MenuEngine(closed_queues=frozenset({"consultation"}))
    engine.start()
    action = engine.handle(DigitPressed("3"))
    assert isinstance(action, RecordDescription) and action.prompts == ("closed",)
    end = engine.handle(DescriptionRecorded("ivr/c/description.wav", 3000))
    assert isinstance(end, HangUp)
    assert (end.reason, end.prompts, end.description) == (
        "closed", ("closed_thanks",), "ivr/c/description.wav")


def test_emergency_while_repair_is_closed_goes_to_the_on_call_engineer() -> None:
    engine = MenuEngine(closed_queues=frozenset({"repair"}))
    _, action = walk(DigitPressed("1"), DigitPressed("1"), engine=engine)
    assert isinstance(action, RouteToOnCall)
    assert (action.priority, action.digits, action.announce) == (SAFETY, "11", ("oncall",))


# -- statistics ---------------------------------------------------------------------


def test_node_events_tell_entries_choices_timeouts_invalid_and_transfers() -> None:
    engine, _ = walk(DigitPressed("7"), NoInput(), DigitPressed("1"),
                     SpeechRecognised("repair"))
    engine.handle(DescriptionRecorded())
    events = [(e.node, e.kind, e.via, e.choice) for e in engine.drain_events()]
    assert events == [
        ("main", "entry", "", ""), ("main", "invalid", "key", ""), ("main", "timeout", "", ""),
        ("main", "choice", "key", "repair"), ("repair", "entry", "", ""),
        ("repair", "choice", "speech", "repair"), (NODE_DESCRIBE, "entry", "", ""),
        ("repair", "transfer", "", "repair"),
    ]
    assert engine.drain_events() == []


def test_events_after_the_end_change_nothing() -> None:
    engine, action = walk(DigitPressed("3"))
    assert engine.handle(DigitPressed("1")) is action
    assert engine.handle(NoInput()) is action
