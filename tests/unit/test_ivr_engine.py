"""The pure IVR menu engine: events in, actions out, driven by menu.yaml."""

from __future__ import annotations

import pytest

from callcenter.constants import QUEUES
from callcenter.ivr.engine import (
    INTENTS,
    CallerIdentified,
    DigitPressed,
    IntentRecognised,
    MenuEngine,
    NoInput,
    PlayAndCollect,
    RouteToQueue,
    default_menu,
    load_menu,
    menu_from_dict,
)


def route(action: object) -> RouteToQueue:
    assert isinstance(action, RouteToQueue), action
    return action


def collect(action: object) -> PlayAndCollect:
    assert isinstance(action, PlayAndCollect), action
    return action


def test_menu_yaml_is_valid_and_complete() -> None:
    menu = load_menu()
    assert {c.digit: c.queue for c in menu.choices} == {
        "9": "repair",  # safety (P1): fire, gas, someone trapped; served first
        "1": "repair",
        "2": "complaint",
        "3": "consultation",
        "0": "general",
    }
    assert all(c.queue in QUEUES for c in menu.choices)
    assert menu.by_digit("9").priority > menu.priority_vip > menu.priority_normal  # type: ignore[union-attr]
    assert set(menu.keywords) <= set(INTENTS)
    assert menu.fallback_queue == "general"


def test_start_plays_greeting_and_collects_one_key() -> None:
    engine = MenuEngine()
    action = collect(engine.start())
    assert action.prompts == (default_menu().greeting_prompt,)
    assert action.stage == "greeting"
    assert action.max_digits == 1
    assert set("0123456789*#") <= set(action.escape_digits)
    assert engine.start() is action  # idempotent


@pytest.mark.parametrize(
    ("digit", "queue", "intent"),
    [("1", "repair", "repair"), ("2", "complaint", "complaint"),
     ("3", "consultation", "consultation"), ("0", "general", "agent")],
)  # fmt: skip
def test_menu_digits_route(digit: str, queue: str, intent: str) -> None:
    engine = MenuEngine()
    engine.start()
    action = route(engine.handle(DigitPressed(digit)))
    assert (action.queue, action.intent, action.digits, action.priority) == (
        queue,
        intent,
        digit,
        0,
    )
    assert action.reason == "choice"
    assert engine.finished


def test_invalid_digit_plays_invalid_then_menu_and_retries() -> None:
    menu = default_menu()
    engine = MenuEngine()
    engine.start()
    action = collect(engine.handle(DigitPressed("7")))
    assert action.prompts == (menu.invalid_prompt, menu.menu_prompt)
    assert action.stage == "menu"
    assert route(engine.handle(DigitPressed("2"))).queue == "complaint"
    assert engine.pressed == ["7", "2"]


def test_three_invalid_tries_go_to_general_never_drop() -> None:
    engine = MenuEngine()
    engine.start()
    collect(engine.handle(DigitPressed("7")))
    collect(engine.handle(DigitPressed("#")))
    action = route(engine.handle(DigitPressed("*")))
    assert (action.queue, action.intent, action.digits, action.reason) == (
        "general",
        "none",
        "",
        "fallback",
    )


def test_no_input_repeats_menu_then_general() -> None:
    menu = default_menu()
    engine = MenuEngine()
    engine.start()
    assert collect(engine.handle(NoInput())).prompts == (menu.menu_prompt,)
    assert collect(engine.handle(NoInput())).prompts == (menu.menu_prompt,)
    assert route(engine.handle(NoInput())).queue == "general"


def test_mixed_failures_count_together() -> None:
    engine = MenuEngine()
    engine.start()
    collect(engine.handle(NoInput()))
    collect(engine.handle(DigitPressed("5")))
    assert route(engine.handle(NoInput())).queue == "general"


@pytest.mark.parametrize(
    ("intent", "queue"),
    [("repair", "repair"), ("complaint", "complaint"),
     ("consultation", "consultation"), ("agent", "general")],
)  # fmt: skip
def test_spoken_intents_route(intent: str, queue: str) -> None:
    engine = MenuEngine()
    engine.start()
    action = route(engine.handle(IntentRecognised(intent, "text")))
    assert (action.queue, action.intent, action.digits) == (queue, intent, "")


def test_spoken_none_is_invalid() -> None:
    menu = default_menu()
    engine = MenuEngine()
    engine.start()
    action = collect(engine.handle(IntentRecognised("none")))
    assert action.prompts == (menu.invalid_prompt, menu.menu_prompt)
    assert engine.failed_tries == 1


@pytest.mark.parametrize("intent", ["repeat", "back"])
def test_repeat_and_back_replay_menu_without_failing(intent: str) -> None:
    menu = default_menu()
    engine = MenuEngine()
    engine.start()
    assert collect(engine.handle(IntentRecognised(intent))).prompts == (menu.menu_prompt,)
    assert engine.failed_tries == 0
    assert route(engine.handle(DigitPressed("1"))).queue == "repair"


def test_endless_repeat_is_bounded_and_ends_in_general() -> None:
    engine = MenuEngine()
    engine.start()
    actions = [engine.handle(IntentRecognised("repeat")) for _ in range(20)]
    assert route(actions[-1]).queue == "general"
    assert engine.prompts_played == default_menu().max_prompts


def test_vip_caller_gets_higher_priority() -> None:
    engine = MenuEngine()
    engine.start()
    assert isinstance(engine.handle(CallerIdentified(known=True, vip="elderly")), PlayAndCollect)
    assert route(engine.handle(DigitPressed("1"))).priority == default_menu().priority_vip > 0


def test_known_non_vip_and_unknown_callers_are_normal() -> None:
    for event in (CallerIdentified(known=True), CallerIdentified(known=False, vip="elderly")):
        engine = MenuEngine()
        engine.handle(event)
        assert route(engine.handle(DigitPressed("3"))).priority == 0


def test_events_after_routing_do_not_change_the_result() -> None:
    engine = MenuEngine()
    engine.start()
    first = route(engine.handle(DigitPressed("2")))
    assert engine.handle(DigitPressed("1")) is first
    assert engine.handle(NoInput()) is first


def test_menu_is_data_driven() -> None:
    menu = menu_from_dict(
        {
            "prompts": {"greeting": "g", "menu": "m", "invalid": "i"},
            "max_tries": 2,
            "choices": [{"digit": "5", "intent": "complaint", "queue": "complaint"}],
        }
    )
    engine = MenuEngine(menu=menu)
    assert collect(engine.start()).prompts == ("g",)
    assert route(engine.handle(DigitPressed("5"))).queue == "complaint"
    engine = MenuEngine(menu=menu)
    engine.start()
    collect(engine.handle(DigitPressed("1")))
    assert route(engine.handle(NoInput())).queue == "general"


@pytest.mark.parametrize(
    "bad",
    [
        {"choices": [{"digit": "1", "intent": "repair", "queue": "plumbing"}]},
        {"choices": [{"digit": "12", "intent": "repair", "queue": "repair"}]},
        {"choices": [{"digit": "1", "intent": "repeat", "queue": "repair"}]},
        {"fallback_queue": "nowhere"},
        {"max_tries": 0},
    ],
)
def test_invalid_menus_are_refused(bad: dict[str, object]) -> None:
    data: dict[str, object] = {"prompts": {"greeting": "g", "menu": "m", "invalid": "i"}}
    data.update(bad)
    with pytest.raises(ValueError, match="invalid IVR menu"):
        menu_from_dict(data)


def test_a_safety_choice_outranks_a_vip_caller_and_keeps_its_level() -> None:
    engine = MenuEngine(menu=load_menu())
    engine.start()
    routed = engine.handle(DigitPressed("9"))
    assert isinstance(routed, RouteToQueue) and routed.intent == "emergency"
    safety = routed.priority
    # The caller lookup answering late (a VIP) must not lower the safety level.
    late = engine.handle(CallerIdentified(known=True, vip="elderly"))
    assert isinstance(late, RouteToQueue) and late.priority == safety
    vip = MenuEngine(menu=load_menu())
    vip.start()
    vip.handle(CallerIdentified(known=True, vip="elderly"))
    plain = vip.handle(DigitPressed("1"))
    assert isinstance(plain, RouteToQueue) and 0 < plain.priority < safety
