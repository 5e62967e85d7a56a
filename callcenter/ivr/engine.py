"""The IVR as a pure state machine: events in, the next action out.

No I/O here: ``callcenter/ivr/handler.py`` turns actions into AGI commands and
what the caller does (a key, an utterance, silence) into events. The menus are
data (``callcenter/ivr/menu.yaml``, loaded by ``callcenter/ivr/menu.py``).

Rules (never drop a caller who tried):
- a key or a spoken choice of the current menu does what the option says:
  open a sub-menu, route to a queue (after a problem description where the
  option asks for one), repeat the menu, or go back;
- a safety emergency named at any menu is a P1 repair at once;
- an invalid key or speech that is no choice plays a short apology and the
  menu again; no input replays the menu;
- after ``max_tries`` failed tries at one menu (or ``max_prompts`` menus in
  all) the caller goes to a person (the menu's fallback queue);
- a caller who has made no sound at all since the call started (no key, no
  speech) hears the spec's silent-line script after the first menu and is hung
  up with the reason ``silent_line`` (spec section 3);
- a queue outside its opening hours takes a message for a call-back; an
  emergency then goes to the on-call engineer;
- a known VIP caller (elderly, disabled) is offered the agent key first and
  raised one priority level.

Each transition also appends :class:`NodeEvent` records (entries, choices by
key or speech, timeouts, invalid input, transfers) for the per-node statistics;
the handler drains them with :meth:`MenuEngine.drain_events`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from callcenter.ivr.menu import (
    AGENT_CHOICE,
    BACK,
    EMERGENCY,
    NAVIGATION_CHOICES,
    REPEAT,
    Menu,
    MenuNode,
    Option,
    default_menu,
)

Stage = Literal["greeting", "menu", "queue"]
NODE_SILENT = "silent"  # the silent-line script
NODE_DESCRIBE = "describe"  # the problem description after the tone
NODE_CLOSED = "closed"  # outside opening hours: a message for a call-back
VIP_KINDS_RAISED = ("elderly", "disabled")
Via = Literal["key", "speech"]


# -- events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigitPressed:
    digit: str


@dataclass(frozen=True, slots=True)
class SpeechRecognised:
    """An utterance recognised against the menu's grammar; ``choice`` "none" = not understood."""

    choice: str
    confidence: float = 1.0
    text: str = ""


@dataclass(frozen=True, slots=True)
class NoInput:
    """The wait ended with no key and no speech at all."""


@dataclass(frozen=True, slots=True)
class CallerIdentified:
    """The caller's number was (or was not) found among the residents."""

    known: bool
    vip: str = "none"


@dataclass(frozen=True, slots=True)
class DescriptionRecorded:
    """The problem description ended (``recording`` is "" when nothing was said)."""

    recording: str = ""
    duration_ms: int = 0


Event = DigitPressed | SpeechRecognised | NoInput | CallerIdentified | DescriptionRecorded


# -- actions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayAndListen:
    """Play ``prompts`` in order (any key interrupts), then wait ``timeout_ms`` for a
    key or, where ``grammar`` is set, an utterance."""

    prompts: tuple[str, ...]
    node: str
    timeout_ms: int
    grammar: str | None
    stage: Stage = "menu"  # "greeting" for the very first presentation


@dataclass(frozen=True, slots=True)
class RecordDescription:
    """Play ``prompts``, a tone, then record up to ``max_ms`` (ends on silence or #)."""

    prompts: tuple[str, ...]
    node: str
    max_ms: int
    end_silence_s: int


@dataclass(frozen=True, slots=True)
class RouteToQueue:
    """Leave the IVR: hand the call to routing for ``queue``."""

    queue: str
    choice: str  # the option's choice id, or an emergency id
    digits: str  # every menu key that led here, in order ("12"); "" when spoken
    priority: int
    reason: Literal["choice", "fallback"]
    announce: tuple[str, ...] = ()  # played before leaving (the transfer to a person)
    description: str = ""  # the recorded problem description, if any


@dataclass(frozen=True, slots=True)
class RouteToOnCall:
    """An emergency while the repair queue is closed: the on-call engineer, 7x24."""

    choice: str
    digits: str
    priority: int
    announce: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HangUp:
    """Play ``prompts`` and hang up, with why."""

    reason: Literal["silent_line", "closed"]
    prompts: tuple[str, ...] = ()
    description: str = ""


Action = PlayAndListen | RecordDescription | RouteToQueue | RouteToOnCall | HangUp


NodeKind = Literal["entry", "choice", "timeout", "invalid", "transfer", "hangup"]


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """One thing that happened at a node, for the per-node statistics."""

    node: str
    kind: NodeKind
    via: str = ""  # key | speech (choices and invalid input)
    choice: str = ""


# -- the machine -------------------------------------------------------------


@dataclass(slots=True)
class MenuEngine:
    """One caller's walk through the menus. Feed events to :meth:`handle`."""

    menu: Menu = field(default_factory=default_menu)
    closed_queues: frozenset[str] = frozenset()
    node: str = ""  # the menu (or script node) the caller is at
    path: list[str] = field(default_factory=list)  # the menus entered, for "back"
    failed_tries: int = 0  # at the current menu
    prompts_played: int = 0
    silent_step: int = 0  # 0: not in the silent-line script; 1..3: its sentence
    heard: bool = False  # any key or speech since the call started
    pressed: list[str] = field(default_factory=list)  # every key, in order
    spoken: list[str] = field(default_factory=list)  # every spoken choice, in order
    known_caller: bool = False
    vip: str = "none"
    pending: Action | None = None
    _route_keys: list[str] = field(default_factory=list)  # per step toward a queue
    _chosen: Option | None = None  # waiting for its description
    _chosen_name: str = ""
    _events: list[NodeEvent] = field(default_factory=list)

    # -- queries ------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return isinstance(self.pending, RouteToQueue | RouteToOnCall | HangUp)

    @property
    def caller_priority(self) -> int:
        if self.vip in VIP_KINDS_RAISED:
            return self.menu.priority["vip"]
        return self.menu.priority["normal"]

    def priority_for(self, option: Option | None) -> int:
        """The higher of the caller's (VIP) and the choice's (safety) level."""
        own = self.menu.priority[option.priority] if option is not None else 0
        return max(self.caller_priority, own)

    def drain_events(self) -> list[NodeEvent]:
        events, self._events = self._events, []
        return events

    # -- transitions ----------------------------------------------------------

    def start(self) -> Action:
        """The first action: the welcome (the agent key offered first to a VIP) and the
        main menu."""
        if self.pending is None:
            main = self.menu.main
            self._enter(main.name)
            vip = ("vip_offer",) if self.vip in VIP_KINDS_RAISED else ()
            self.prompts_played = 1
            self.pending = self._listen(("welcome", *vip, main.prompt), main, stage="greeting")
        return self.pending

    def handle(self, event: Event) -> Action:
        """Apply ``event``; return the next action (the pending one if nothing changes)."""
        if isinstance(event, CallerIdentified):
            return self._identify(event)
        if self.pending is None:
            self.start()
        assert self.pending is not None
        if self.finished:
            return self.pending
        if isinstance(event, DescriptionRecorded):
            return self._described(event)
        if isinstance(self.pending, RecordDescription):
            return self.pending  # keys during the description belong to it
        if isinstance(event, DigitPressed):
            return self._digit(event.digit)
        if isinstance(event, SpeechRecognised):
            return self._speech(event)
        if isinstance(event, NoInput):
            return self._no_input()
        raise TypeError(f"unknown IVR event {event!r}")

    def _identify(self, event: CallerIdentified) -> Action:
        """Known before :meth:`start` (the VIP offer), or later (only the priority)."""
        self.known_caller = event.known
        self.vip = event.vip if event.known else "none"
        if isinstance(self.pending, RouteToQueue | RouteToOnCall):
            option = self._chosen
            self.pending = replace(self.pending, priority=self.priority_for(option))
        return self.pending if self.pending is not None else self.start()

    def _digit(self, digit: str) -> Action:
        self.heard, self.silent_step = True, 0
        self.pressed.append(digit)
        option = self._current().by_key(digit)
        if option is None:
            self._event("invalid", via="key")
            return self._failed(invalid_prompt="invalid")
        return self._choose(option, option.choice, via="key")

    def _speech(self, event: SpeechRecognised) -> Action:
        self.heard, self.silent_step = True, 0
        self.spoken.append(event.choice)
        node = self._current()
        if event.choice in (*self.menu.emergencies, EMERGENCY):
            emergency = node.emergency_option() or self.menu.emergency_option()
            return self._choose(emergency, event.choice, via="speech")
        option = node.by_choice(event.choice)
        if option is None and event.choice in NAVIGATION_CHOICES:
            option = Option(key="", choice=event.choice)  # "back" at the top = repeat
        if option is None:
            self._event("invalid", via="speech")
            return self._failed(invalid_prompt="not_understood")
        return self._choose(option, event.choice, via="speech")

    def _no_input(self) -> Action:
        self._event("timeout")
        if self.silent_step or not self.heard:
            return self._silent_line()
        return self._failed(invalid_prompt=None)

    def _choose(self, option: Option, name: str, *, via: Via) -> Action:
        self._event("choice", via=via, choice=name)
        if option.choice == REPEAT:
            return self._present(self._current(), ())
        if option.choice == BACK:
            return self._back()
        # One entry per step toward a queue ("" when spoken), so "back" drops its own.
        self._route_keys.append(option.key if via == "key" else "")
        if option.next:
            self.failed_tries = 0
            target = self.menu.node(option.next)
            self._enter(target.name)
            return self._present(target, ())
        return self._to_queue(option, name)

    def _to_queue(self, option: Option, name: str) -> Action:
        self._chosen, self._chosen_name = option, name
        queue = option.queue or self.menu.fallback_queue
        if queue in self.closed_queues:
            if option.priority == "safety":
                return self._oncall(option, name)
            return self._closed()
        if option.describe:
            self._enter(NODE_DESCRIBE)
            self.pending = RecordDescription(
                prompts=("describe",), node=NODE_DESCRIBE,
                max_ms=self.menu.timing.description_max_ms,
                end_silence_s=self.menu.timing.description_end_silence_s,
            )
            return self.pending
        return self._route(option, name, reason="choice")

    def _described(self, event: DescriptionRecorded) -> Action:
        if self.node == NODE_CLOSED:
            self.pending = HangUp(
                reason="closed", prompts=("closed_thanks",), description=event.recording
            )
            return self.pending
        assert self._chosen is not None
        return self._route(self._chosen, self._chosen_name, reason="choice",
                           description=event.recording)

    def _closed(self) -> Action:
        self._enter(NODE_CLOSED)
        self.pending = RecordDescription(
            prompts=("closed",), node=NODE_CLOSED,
            max_ms=self.menu.timing.description_max_ms,
            end_silence_s=self.menu.timing.description_end_silence_s,
        )
        return self.pending

    def _oncall(self, option: Option, name: str) -> Action:
        self._event("transfer", choice=name)
        self.pending = RouteToOnCall(
            choice=name, digits="".join(self._route_keys),
            priority=self.priority_for(option), announce=("oncall",),
        )
        return self.pending

    def _back(self) -> Action:
        if len(self.path) > 1:
            self.path.pop()
            self.node = self.path[-1]
            self.failed_tries = 0
            self._event("entry")
            if self._route_keys:
                self._route_keys.pop()  # the key that opened the menu just left
        return self._present(self._current(), ())

    def _silent_line(self) -> Action:
        """Spec section 3: hello, wait, hello, wait, "no sound", wait, hang up."""
        self.silent_step += 1
        main = self.menu.main
        wait = self.menu.timing.silent_wait_ms
        if self.silent_step > 3:
            self.pending = HangUp(reason="silent_line")
            return self.pending
        if self.silent_step == 1:
            self._event("entry", node=NODE_SILENT)
        sentence = "silent_goodbye" if self.silent_step == 3 else "silent_hello"
        self.pending = PlayAndListen(
            prompts=(sentence,), node=NODE_SILENT, timeout_ms=wait, grammar=main.grammar
        )
        return self.pending

    def _failed(self, *, invalid_prompt: str | None) -> Action:
        self.failed_tries += 1
        if self.failed_tries >= self.menu.timing.max_tries:
            return self._fallback()
        apology = (invalid_prompt,) if invalid_prompt else ()
        return self._present(self._current(), apology)

    def _present(self, node: MenuNode, before: tuple[str, ...]) -> Action:
        if self.prompts_played >= self.menu.timing.max_prompts:
            return self._fallback()
        self.prompts_played += 1
        self.pending = self._listen((*before, node.prompt), node)
        return self.pending

    def _fallback(self) -> Action:
        node = self._current()
        queue = node.fallback_queue or self.menu.fallback_queue
        option = Option(key="", choice=AGENT_CHOICE, queue=queue)
        self._chosen, self._chosen_name = option, AGENT_CHOICE
        return self._route(option, AGENT_CHOICE, reason="fallback")

    def _route(
        self, option: Option, name: str, *, reason: Literal["choice", "fallback"],
        description: str = "",
    ) -> Action:
        queue = option.queue or self.menu.fallback_queue
        to_person = option.choice == AGENT_CHOICE
        self._event("transfer", choice=name, node=self.path[-1] if self.path else self.node)
        self.pending = RouteToQueue(
            queue=queue, choice=name, digits="".join(self._route_keys),
            priority=self.priority_for(option), reason=reason,
            announce=("transfer_agent",) if to_person else (), description=description,
        )
        return self.pending

    # -- helpers --------------------------------------------------------------

    def _current(self) -> MenuNode:
        return self.menu.node(self.path[-1])

    def _enter(self, node: str) -> None:
        self.node = node
        if node in self.menu.menus:
            self.path.append(node)
        self._event("entry")

    def _listen(
        self, prompts: tuple[str, ...], node: MenuNode, stage: Stage = "menu"
    ) -> PlayAndListen:
        return PlayAndListen(
            prompts=prompts, node=node.name, timeout_ms=self.menu.timing.input_timeout_ms,
            grammar=node.grammar, stage=stage,
        )

    def _event(self, kind: NodeKind, via: str = "", choice: str = "", *,
               node: str | None = None) -> None:
        """A node event, at the current node unless ``node`` is given (while the
        silent-line script runs, its steps count at the silent node)."""
        if node is None:
            node = NODE_SILENT if self.silent_step and kind != "entry" else self.node
        self._events.append(NodeEvent(node=node, kind=kind, via=via, choice=choice))

