"""The IVR's menus as data: ``callcenter/ivr/menu.yaml`` parsed and checked.

Pure (no I/O but reading the file). A menu file that breaks a rule of the spec
(section 2: short menus, a person reachable from every menu) or names an
unknown queue, prompt or menu is refused at start with every problem listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callcenter.constants import QUEUES
from callcenter.ivr.hours import HoursError, parse_hours

MENU_PATH = Path(__file__).with_name("menu.yaml")
MAIN_MENU = "main"
DTMF_KEYS = "0123456789*#"
MAX_OPTIONS = 5  # spec section 2: menus short and simple
REPEAT, BACK, AGENT_CHOICE, EMERGENCY = "repeat", "back", "agent", "emergency"
ROUTING_CHOICES = ("repair", "complaint", "consultation", AGENT_CHOICE, EMERGENCY)
NAVIGATION_CHOICES = (REPEAT, BACK)
# Prompts the engine plays by name besides each menu's own.
ENGINE_PROMPTS = ("welcome", "vip_offer", "invalid", "not_understood", "silent_hello",
                  "silent_goodbye", "describe", "transfer_agent", "closed", "closed_thanks",
                  "oncall")


@dataclass(frozen=True, slots=True)
class Option:
    key: str
    choice: str  # one of ROUTING_CHOICES or NAVIGATION_CHOICES
    queue: str = ""  # where a routing choice goes
    next: str = ""  # or the sub-menu it opens
    priority: str = "normal"
    describe: bool = False  # a problem description after a tone, before the queue


@dataclass(frozen=True, slots=True)
class MenuNode:
    name: str
    prompt: str
    grammar: str | None
    options: tuple[Option, ...]
    fallback_queue: str = ""  # after the retries; "" = the menu file's fallback

    def by_key(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)

    def by_choice(self, choice: str) -> Option | None:
        return next((o for o in self.options if o.choice == choice), None)

    def emergency_option(self) -> Option | None:
        return self.by_choice(EMERGENCY)

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(o.choice for o in self.options)


@dataclass(frozen=True, slots=True)
class Timing:
    input_timeout_ms: int = 5000
    max_tries: int = 3
    max_prompts: int = 6
    speech_end_silence_s: int = 2
    max_utterance_ms: int = 6000
    min_confidence: float = 0.5
    silent_wait_ms: int = 5000
    description_max_ms: int = 30000
    description_end_silence_s: int = 3


@dataclass(frozen=True, slots=True)
class Menu:
    menus: dict[str, MenuNode]
    prompts: dict[str, str]  # name -> text
    timing: Timing
    priority: dict[str, int]
    fallback_queue: str
    emergencies: tuple[str, ...]
    hours: dict[str, Any]  # queue -> schedule (callcenter/ivr/hours.py reads it)

    @property
    def main(self) -> MenuNode:
        return self.menus[MAIN_MENU]

    def node(self, name: str) -> MenuNode:
        return self.menus[name]

    def emergency_option(self) -> Option:
        """The option a named emergency takes from a menu without one of its own."""
        for node in self.menus.values():
            option = node.emergency_option()
            if option is not None:
                return option
        raise LookupError("no menu has an emergency option")  # _validate prevents this

    def safety_key_paths(self) -> frozenset[str]:
        """Every key sequence that ends on a safety (P1) choice, e.g. {"11"}."""
        paths: set[str] = set()

        def walk(node: MenuNode, prefix: str, seen: tuple[str, ...]) -> None:
            for option in node.options:
                if option.next and option.next not in seen:
                    walk(self.menus[option.next], prefix + option.key, (*seen, option.next))
                elif option.priority == "safety":
                    paths.add(prefix + option.key)

        walk(self.main, "", (MAIN_MENU,))
        return frozenset(paths)


def menu_from_dict(data: dict[str, Any]) -> Menu:
    """Build and validate a :class:`Menu` from parsed YAML."""
    timing = Timing(**{k: v for k, v in (data.get("timing") or {}).items()})
    fallback = data.get("fallback") or {}
    menus = {str(name): _node(str(name), spec) for name, spec in (data.get("menus") or {}).items()}
    menu = Menu(
        menus=menus,
        prompts={str(k): str(v) for k, v in (data.get("prompts") or {}).items()},
        timing=timing,
        priority={"normal": 0, **{str(k): int(v) for k, v in (data.get("priority") or {}).items()}},
        fallback_queue=str(fallback.get("queue", "general")),
        emergencies=tuple(str(e) for e in data.get("emergencies") or ()),
        hours=dict(data.get("hours") or {}),
    )
    problems = _problems(menu)
    if problems:
        raise ValueError("invalid IVR menu file: " + "; ".join(problems))
    return menu


def _node(name: str, spec: dict[str, Any]) -> MenuNode:
    options = tuple(
        Option(key=str(o["key"]), choice=str(o["choice"]), queue=str(o.get("queue", "")),
               next=str(o.get("next", "")), priority=str(o.get("priority", "normal")),
               describe=bool(o.get("describe", False)))
        for o in spec.get("options") or ()
    )
    grammar = spec.get("grammar")
    return MenuNode(name=name, prompt=str(spec.get("prompt", name)),
                    grammar=str(grammar) if grammar else None, options=options,
                    fallback_queue=str(spec.get("fallback_queue", "")))


def _problems(menu: Menu) -> list[str]:
    problems = []
    if MAIN_MENU not in menu.menus:
        problems.append(f"no {MAIN_MENU!r} menu")
    for node in menu.menus.values():
        problems += _node_problems(menu, node)
    for name in ENGINE_PROMPTS:
        if name not in menu.prompts:
            problems.append(f"prompt {name!r} has no text")
    if menu.fallback_queue not in QUEUES:
        problems.append(f"unknown fallback queue {menu.fallback_queue!r}")
    if not {"normal", "vip", "safety"} <= set(menu.priority):
        problems.append("priority needs normal, vip and safety levels")
    if not any(n.emergency_option() for n in menu.menus.values()):
        problems.append("no menu offers the emergency choice")
    try:
        parse_hours(menu.hours, QUEUES)
    except HoursError as exc:
        problems.append(str(exc))
    t = menu.timing
    if t.max_tries < 1 or t.max_prompts < t.max_tries or t.input_timeout_ms <= 0:
        problems.append("timing: max_tries >= 1, max_prompts >= max_tries, input_timeout_ms > 0")
    return problems


def _node_problems(menu: Menu, node: MenuNode) -> list[str]:
    where = f"menu {node.name!r}"
    problems = []
    keys = [o.key for o in node.options]
    if len(set(keys)) != len(keys):
        problems.append(f"{where}: a key used twice")
    if len(node.options) > MAX_OPTIONS:
        problems.append(f"{where}: {len(node.options)} options (at most {MAX_OPTIONS})")
    if node.by_choice(AGENT_CHOICE) is None:
        problems.append(f"{where}: no option for a person (choice {AGENT_CHOICE!r})")
    if node.prompt not in menu.prompts:
        problems.append(f"{where}: prompt {node.prompt!r} has no text")
    if node.fallback_queue and node.fallback_queue not in QUEUES:
        problems.append(f"{where}: unknown fallback queue {node.fallback_queue!r}")
    for o in node.options:
        problems += [f"{where}, key {o.key!r}: {p}" for p in _option_problems(menu, o)]
    return problems


def _option_problems(menu: Menu, o: Option) -> list[str]:
    problems = []
    if len(o.key) != 1 or o.key not in DTMF_KEYS:
        problems.append("not a DTMF key")
    if o.choice not in (*ROUTING_CHOICES, *NAVIGATION_CHOICES):
        problems.append(f"unknown choice {o.choice!r}")
    if o.choice in ROUTING_CHOICES and not o.next and o.queue not in QUEUES:
        problems.append(f"unknown queue {o.queue!r}")
    if o.next and o.next not in menu.menus:
        problems.append(f"unknown menu {o.next!r}")
    if o.priority not in menu.priority:
        problems.append(f"unknown priority {o.priority!r}")
    return problems


def load_menu(path: Path | str | None = None) -> Menu:
    with open(path or MENU_PATH, encoding="utf-8") as fh:
        return menu_from_dict(yaml.safe_load(fh))


@lru_cache(maxsize=1)
def default_menu() -> Menu:
    return load_menu(MENU_PATH)
