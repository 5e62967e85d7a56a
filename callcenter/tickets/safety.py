"""Personal-safety hazards in a caller's words: the recall-first half of P1.

Pure: text in, a ``SafetyReading`` out. The hazard families live in
``safety.yaml`` (concepts combined into patterns); this module expands them and
applies the few things that cancel a hit: a negation right before it, a
hypothetical question around it, a danger said to be over, or context showing it
is something else (someone smoking is not a fire). Hedges never cancel: a caller
who only suspects a gas leak is reporting one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callcenter.text import normalise

SAFETY_FILE = Path(__file__).with_name("safety.yaml")
# The same engine reads the P2 problems (basic living affected) from their own file.
BASIC_NEEDS_FILE = Path(__file__).with_name("basic_needs.yaml")

# The category of the problem each hazard is (spec section 5: a falling object is
# security, a fallen tree landscaping, the rest engineering). Injuries, structural
# dangers and pleas for help belong to whatever caused them: only a hint.
DEFINITE_HAZARDS = frozenset({
    "gas", "fire", "electrical_fire", "flood", "burst_pipe", "lift_trapped", "live_wire",
    "falling_object", "tree_down", "locked_in", "missing_person", "violence", "lift_fault",
    "dog_attack", "unresponsive_person",
})
HAZARD_CATEGORY = {
    "gas": "engineering",
    "fire": "engineering",
    "electrical_fire": "engineering",
    "flood": "engineering",
    "burst_pipe": "engineering",
    "lift_trapped": "engineering",
    "live_wire": "engineering",
    "falling_object": "security",
    "injury": "security",
    "structure": "engineering",
    "loose_surface": "engineering",
    "tree_down": "landscaping",
    "locked_in": "engineering",
    "missing_person": "security",
    "violence": "security",
    "lift_fault": "engineering",
    "dog_attack": "security",
    # Staff must go and knock or get in: the gate and patrol guards.
    "unresponsive_person": "security",
    "deep_water": "engineering",
    "safety_equipment": "engineering",
    "urgent_plea": "engineering",
}

# Negation words that begin a phrase which negates nothing (没一会儿就冒烟了).
_NOT_NEGATING = (
    "没一会", "没多久", "没过多久", "没几分钟", "没几秒", "没办法", "没法", "没人管", "没人来",
    "不一会", "不知道", "不得了", "不停", "不行", "不断", "不住", "不敢", "不了", "无缘无故",
    "没完没了", "不晓得", "别提", "没想到",
)


# A plea for help says nothing of a danger unless one is described.
_NOT_A_DANGER_ALONE = frozenset({"urgent_plea"})
# A strong negation inside a hit that spans several words negates its second part
# (横在路上？没有，倒在草坪里).
_NEGATION_INSIDE = ("没有", "不是", "并没", "没在", "不在")
# How far after a "now" (现在, 今天) a caller says it is over (现在是不漏了,
# 今天早上一点味儿都没有了).
_NOW_OVER_WINDOW = 12


@dataclass(frozen=True, slots=True)
class HazardHit:
    """One place in the text where a hazard was described."""

    hazard: str
    words: str
    start: int
    cancelled_by: str | None = None  # negation | hypothetical | over | context

    @property
    def active(self) -> bool:
        return self.cancelled_by is None

    def explain(self) -> str:
        note = f" ({self.cancelled_by})" if self.cancelled_by else ""
        return f"{self.hazard}: {self.words}{note}"


@dataclass(frozen=True, slots=True)
class SafetyReading:
    """The hazards found; ``hazards`` are those that make the call P1."""

    hits: tuple[HazardHit, ...]
    hazards: tuple[str, ...]

    @property
    def is_p1(self) -> bool:
        return bool(self.hazards)

    @property
    def doubtful(self) -> bool:
        """A danger was mentioned but negated, hypothetical, over or too weak alone:
        ask the agent (hits that context shows to be something else do not count)."""
        return not self.is_p1 and any(
            h.cancelled_by != "context" and h.hazard not in _NOT_A_DANGER_ALONE for h in self.hits
        )

    def evidence(self) -> list[str]:
        shown = [h for h in self.hits if h.hazard in self.hazards] or list(self.hits)
        return [h.explain() for h in shown[:6]]


@dataclass(frozen=True, slots=True)
class SafetyRules:
    hazards: dict[str, tuple[re.Pattern[str], ...]]
    requires: dict[str, tuple[str, ...]]
    signs: dict[str, tuple[re.Pattern[str], ...]]
    unless: dict[str, tuple[str, ...]]
    unless_window: int
    unless_anywhere: dict[str, tuple[str, ...]]
    sign_window: int
    negation_words: tuple[str, ...]
    negation_window: int
    taken_back: re.Pattern[str]
    hypothetical_markers: tuple[str, ...]
    question_markers: tuple[str, ...]
    hypothetical_window: int
    worry_markers: tuple[str, ...]
    worry_window: int
    mistaken_markers: tuple[str, ...]
    mistaken_until: tuple[str, ...]
    mistaken_window: int
    mistaken_lead: int
    future_markers: tuple[str, ...]
    future_window: int
    topic_after: tuple[str, ...]
    over_markers: tuple[str, ...]
    past_markers: tuple[str, ...]
    distant_past_markers: tuple[str, ...]
    hazard_over_markers: dict[str, tuple[str, ...]]
    recurrence_markers: tuple[str, ...]
    recent_markers: tuple[str, ...]
    over_window: int
    story_window: int = 0
    present_markers: tuple[str, ...] = ()
    still_markers: tuple[str, ...] = ()
    gone_markers: tuple[str, ...] = ()
    not_recurrence: tuple[str, ...] = ()


def _expand(pattern: str, concepts: dict[str, str]) -> re.Pattern[str]:
    def concept(m: re.Match[str]) -> str:
        return f"(?:{concepts[m.group(1)]})"

    return re.compile(re.sub(r"\{([A-Z_]+)\}", concept, pattern))


def _words(items: list[Any]) -> tuple[str, ...]:
    """A word list, where an item may be a whole shared list (a YAML alias)."""
    return tuple(str(w) for item in items
                 for w in (item if isinstance(item, list) else [item]))


def _taken_back(words: list[Any], window: int) -> re.Pattern[str]:
    """Words that take back the hit right before them, a few characters after it."""
    alternatives = "|".join(re.escape(str(w)) for w in words) or "(?!)"
    return re.compile(f".{{0,{window}}}?(?:{alternatives})")


def rules_from_dict(data: dict[str, Any]) -> SafetyRules:
    concepts: dict[str, str] = {}
    for name, words in data["concepts"].items():  # a concept may use those above it
        concepts[str(name)] = _expand(str(words), concepts).pattern

    def compiled(items: list[str] | None) -> tuple[re.Pattern[str], ...]:
        return tuple(_expand(str(p), concepts) for p in items or [])

    unless = dict(data.get("unless") or {})
    window = int(unless.pop("window", 8))
    signs = dict(data.get("signs") or {})
    sign_window = int(signs.pop("window", 30))
    anywhere = data.get("unless_anywhere") or {}
    hyp, over, neg = data["hypothetical"], data["over"], data["negation"]
    return SafetyRules(
        hazards={str(h): compiled(p) for h, p in data["hazards"].items()},
        requires={str(h): tuple(map(str, s)) for h, s in (data.get("requires") or {}).items()},
        signs={str(s): compiled(p) for s, p in signs.items()},
        unless={str(h): _words(w) for h, w in unless.items()},
        unless_window=window,
        unless_anywhere={str(h): _words(w) for h, w in anywhere.items()},
        sign_window=sign_window,
        negation_words=tuple(sorted(map(str, neg["words"]), key=len, reverse=True)),
        negation_window=int(neg["window"]),
        taken_back=_taken_back(neg.get("taken_back") or [], int(neg.get("taken_back_window", 0))),
        hypothetical_markers=tuple(map(str, hyp["markers"])),
        question_markers=tuple(map(str, hyp["question_markers"])),
        hypothetical_window=int(hyp["window"]),
        worry_markers=tuple(map(str, hyp.get("worry_markers", []))),
        worry_window=int(hyp.get("worry_window", 0)),
        mistaken_markers=tuple(map(str, hyp.get("mistaken_markers", []))),
        mistaken_until=tuple(map(str, hyp.get("mistaken_until", []))),
        mistaken_window=int(hyp.get("mistaken_window", 0)),
        mistaken_lead=int(hyp.get("mistaken_lead", 0)),
        future_markers=tuple(map(str, hyp.get("future_markers", []))),
        future_window=int(hyp.get("future_window", 0)),
        topic_after=tuple(map(str, hyp.get("topic_after", []))),
        over_markers=tuple(map(str, over["markers"])),
        past_markers=tuple(map(str, over["past_markers"])),
        distant_past_markers=tuple(map(str, over.get("distant_past_markers", ()))),
        hazard_over_markers={str(k): _words(v) for k, v in over.get("by_hazard", {}).items()},
        recurrence_markers=tuple(map(str, over.get("recurrence_markers", []))),
        recent_markers=tuple(map(str, over.get("recent_markers", []))),
        over_window=int(over["window"]),
        story_window=int(over.get("story_window", 0)),
        present_markers=tuple(map(str, over.get("present_markers", []))),
        still_markers=tuple(map(str, over.get("still_markers", []))),
        gone_markers=tuple(map(str, over.get("gone_markers", []))),
        not_recurrence=tuple(map(str, over.get("not_recurrence", []))),
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping: PyYAML keeps the
    last silently, so a second ``gas:`` list would drop the first one's words."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ValueError(f"{key_node.start_mark.name}, line {key_node.start_mark.line + 1}:"
                                 f" {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_UniqueKeyLoader)
    return data


@lru_cache(maxsize=2)
def load_rules(path: Path = SAFETY_FILE) -> SafetyRules:
    """The rules in ``path``; a file whose negation names ``taken_back_from`` shares
    that file's take-back words, so the two lists cannot drift apart."""
    data = _read_yaml(path)
    neg = data["negation"]
    source = neg.pop("taken_back_from", None)
    if source:
        shared = _read_yaml(path.with_name(str(source)))["negation"]
        neg["taken_back"] = shared["taken_back"]
        neg["taken_back_window"] = shared["taken_back_window"]
    return rules_from_dict(data)


def negated(text: str, start: int, rules: SafetyRules | None = None) -> bool:
    """Whether a negation stands right before ``start`` in normalised text (没有受伤,
    不是煤气味), but not a hedge (是不是) or a phrase that negates nothing (没一会儿)."""
    rules = rules or load_rules()
    lo = max(0, start - rules.negation_window)
    for word in rules.negation_words:
        at = text.rfind(word, lo, start)
        if at >= 0 and not _hedge(text, at) and not text.startswith(_NOT_NEGATING, at):
            return True
    return False


def _negated_inside(m: re.Match[str], rules: SafetyRules) -> bool:
    """Whether a negation inside a hit of several words negates the word that makes
    it a danger (插座都好使没冒烟, 线都在里面没掉下来): what comes before the
    negation is no hit alone, and with the negation taken out the hit still
    matches, so the negated word is the danger word itself (出不来 and 止不住 do not
    match without their 不; in 树倒了车过不去人 the tree fell before the 不)."""
    hit, text, start = m.group(0), m.string, m.start()
    for word in rules.negation_words:
        at = hit.rfind(word, 1)
        if at < 1 or len(hit) - at - len(word) > rules.negation_window:
            continue
        if text.startswith(_NOT_NEGATING, start + at) or _asks(text, start + at):
            continue
        if not m.re.search(hit[:at]) and m.re.fullmatch(hit[:at] + hit[at + len(word) :]):
            return True
    return False


def _denied_after(text: str, end: int, rules: SafetyRules) -> bool:
    """A hit that the words right after it deny (一点煤气味都没有, 烟也没有; the
    agent's question said back and answered, 焦味？没有，没闻到), but
    not a new clause after a finished event (瓷砖撬松了也没有粘) or 也没有人管."""
    rest = text[end : end + 6]
    after = (rest[:2].lstrip("味儿道") + rest[2:])[:4]  # the smell word of 煤气|味都没有
    if rest.startswith("不了"):  # the potential form: 水也烧不了 (cannot boil water)
        return True
    if rules.taken_back.match(text, end):  # 关在里面了，不对，也不算关: the caller corrects it
        return True
    if rest.startswith(("没有没", "没没", "没有不")):  # 焦味？没有，没闻到: asked back, denied
        return True
    return (after[:3] in ("都没有", "也没有", "都不是", "也不是") and after[3:] != "人"
            and not text[:end].endswith("了"))


def _hedge(text: str, at: int) -> bool:
    """The 不 of 是不是 (is it ...?): a hedge, not a negation."""
    return text[max(0, at - 1) : at + 2] == "是不是"


def _asks(text: str, at: int) -> bool:
    """A negation that is half of a question (是不是, 有没有), not a negation. Only
    inside a hit: before one, 没有没有 would read as 有没."""
    return _hedge(text, at) or text[max(0, at - 1) : at + 1] == "有没"


def _hypothetical(text: str, start: int, end: int, rules: SafetyRules) -> bool:
    if text.startswith("的时候", end):  # 着火的时候才开: any time it might happen
        return True
    # 高空抛(物)这个事儿: a topic, not an event (the hit may end a character or two short
    # of the whole word).
    if any(text.startswith(rules.topic_after, at) for at in range(end, end + 3)):
        return True
    if (_said_before(text, start, rules.worry_markers, rules.worry_window)
            or _said_before(text, start, rules.future_markers, rules.future_window)
            or _mistaken(text, start, rules)):
        return True
    w = rules.hypothetical_window
    # The clause may begin before the hit or inside it (报警器我想问问要是响了…).
    opening = text[max(0, start - w) : end - 1]
    if not any(m in opening for m in rules.hypothetical_markers):
        return False
    return any(q in text[start : end + w] for q in rules.question_markers)


def _mistaken(text: str, start: int, rules: SafetyRules) -> bool:
    """Whether the hit at ``start`` is what the caller wrongly believed (还以为是…烧了),
    no words of what it really was (结果, 原来) standing between."""
    lo = max(0, start - rules.mistaken_window)
    for marker in rules.mistaken_markers:
        at = text.rfind(marker, lo, start)
        if at >= 0 and not any(u in text[at + len(marker) : start] for u in rules.mistaken_until):
            return True
    return False


def _taken_for(text: str, end: int, rules: SafetyRules) -> bool:
    """Whether what the caller sensed was first taken for this danger, wrongly
    (闻着一股焦糊味，还以为是电瓶车电池烧了): the sense is real, the danger it seemed
    to be is not. Only when the belief names a danger (墙皮鼓起来了，还以为是回南天
    names none: the bulge stays what it is)."""
    for marker in rules.mistaken_markers:
        at = text.find(marker, end, end + rules.mistaken_lead)
        if at < 0:
            continue
        belief = text[at + len(marker) : at + len(marker) + rules.mistaken_window]
        if any(p.search(belief) for patterns in rules.hazards.values() for p in patterns):
            return True
    return False


def _said_before(text: str, start: int, markers: tuple[str, ...], window: int) -> bool:
    """Whether one of ``markers`` stands in the ``window`` characters before ``start``."""
    return any(m in text[max(0, start - window) : start] for m in markers)


def _masked(text: str, words: tuple[str, ...]) -> str:
    """``text`` with each of ``words`` blanked out (same length, so offsets hold)."""
    for word in words:
        text = text.replace(word, "_" * len(word))
    return text


# 又闷又黑 (both stuffy and dark): the 又 of "both ... and", not "again".
_BOTH_AND = re.compile(r"又(.)又")


def _says_again(span: str, rules: SafetyRules, over_words: tuple[str, ...] = (),
                recent: bool = True) -> bool:
    """Whether ``span`` says the danger is back or still there (又, 还有味). The 还在
    of 还在医院 is care going on, not the danger, and the 还有 of 旁边还有个碎花盆
    is "also": over markers (the general ones and ``over_words``, a hazard's own)
    and not_recurrence are read first. ``recent``: whether 刚才 counts (it makes a
    danger current against a time in the past, but not against the caller saying
    it is over: 刚才把我关里头了…已经出来了)."""
    span = _masked(span, (*rules.over_markers, *over_words, *rules.not_recurrence))
    span = _BOTH_AND.sub(r"_\1_", span)
    markers = (*rules.recurrence_markers, *(rules.recent_markers if recent else ()))
    return any(r in span for r in markers)


def _over(hazard: str, text: str, start: int, end: int, rules: SafetyRules) -> bool:
    w = rules.over_window
    before, after = text[max(0, start - w) : start], text[end : end + w]
    if any(p in before for p in rules.distant_past_markers) or _years_ago_story(text, start, rules):
        # Years ago (小时候脊髓受伤，一直在轮椅上): what goes on is what it left.
        return True
    hazard_over = rules.hazard_over_markers.get(hazard, ())
    said_over = any(o in after for o in (*rules.over_markers, *hazard_over))
    if _says_again(text[max(0, start - w) : end + w], rules, hazard_over, recent=not said_over):
        return False
    return (said_over or any(p in before for p in rules.past_markers)
            or _told_as_past(text, start, end, rules))


def _years_ago_story(text: str, start: int, rules: SafetyRules) -> bool:
    """A hit in a story begun years ago (前年发大水那次你还记得吧？就是楼上热水管爆了),
    the caller not back to now on the way (老伴前年走了…我闻着有点糊味: now)."""
    lo = max(0, start - rules.story_window)
    since = max((text.rfind(p, lo, start) for p in rules.distant_past_markers), default=-1)
    if since < 0:
        return False
    way = _masked(text[since:start], rules.not_recurrence)
    return not any(m in way for m in rules.present_markers)


def _still_there(text: str, end: int, rules: SafetyRules) -> bool:
    """Whether the caller says, after a hit told in the past, that what it left is
    there now (昨晚台风把树掀起来了…现在学生从底下过), and not that it is over now
    (现在是不漏了, 现在已经修好了)."""
    # 一直没人来: nobody came, not the danger still there.
    after = _masked(text[end : end + rules.story_window * 2], rules.not_recurrence)
    for marker in rules.still_markers:
        at = after.find(marker)
        while at >= 0:
            told = after[at + len(marker) : at + len(marker) + _NOW_OVER_WINDOW]
            if not any(o in told for o in (*rules.over_markers, *rules.gone_markers)):
                return True
            at = after.find(marker, at + 1)
    return False


def _told_as_past(text: str, start: int, end: int, rules: SafetyRules) -> bool:
    """A hit inside a story the caller began in the past (去年楼上报停，结果管子冻裂
    了把楼下都淹了): a time in the past reaches further than ``over_window`` while
    the caller has not come back to now (现在, 今天, 还, 又) on the way to the hit or
    right after it (昨晚台风把树掀起来了…现在学生从底下钻过去: what the past did is
    still there)."""
    if not rules.story_window:
        return False
    lo = max(0, start - rules.story_window)
    told = [text.rfind(p, lo, start) for p in rules.past_markers]
    since = max(told, default=-1)
    if since < 0:
        return False
    way = _masked(text[since:end], rules.not_recurrence)
    return not (any(m in way for m in rules.present_markers) or _says_again(way, rules)
                or _still_there(text, end, rules))


def _other_context(hazard: str, text: str, start: int, end: int, rules: SafetyRules) -> bool:
    words = rules.unless.get(hazard, ())
    w = rules.unless_window
    around = text[max(0, start - w) : end + w]
    if any(x in around for x in words):
        return True
    return any(x in text for x in rules.unless_anywhere.get(hazard, ()))


def _cancel_reason(hazard: str, text: str, m: re.Match[str], rules: SafetyRules) -> str | None:
    start, end = m.start(), m.end()
    if _other_context(hazard, text, start, end, rules):
        return "context"
    if (negated(text, start, rules) or any(n in m.group(0)[2:] for n in _NEGATION_INSIDE)
            or _negated_inside(m, rules) or _denied_after(text, end, rules)):
        return "negation"
    if _hypothetical(text, start, end, rules) or _taken_for(text, end, rules):
        return "hypothetical"
    if _over(hazard, text, start, end, rules):
        return "over"
    return None


def _hits(text: str, rules: SafetyRules) -> list[HazardHit]:
    hits: list[HazardHit] = []
    for hazard, patterns in rules.hazards.items():
        seen: set[int] = set()
        for pattern in patterns:
            for m in pattern.finditer(text):
                if m.start() in seen or not m.group(0):
                    continue
                seen.add(m.start())
                reason = _cancel_reason(hazard, text, m, rules)
                hits.append(HazardHit(hazard, m.group(0), m.start(), reason))
    hits.sort(key=lambda h: (h.start, h.hazard))
    return _past_carries_on(hits, text, rules)


def _past_carries_on(hits: list[HazardHit], text: str, rules: SafetyRules) -> list[HazardHit]:
    """A danger told as over or past (上个月水管爆了，水灌进我家) goes on being told
    for a few words: the hits right after it belong to the same past event, unless
    the caller says it is back or still there."""
    carried: list[HazardHit] = []
    over_end: int | None = None
    for hit in hits:
        if hit.cancelled_by == "over":
            over_end = hit.start + len(hit.words)
        elif hit.active and over_end is not None and hit.start - over_end <= rules.over_window:
            between = text[over_end : hit.start + len(hit.words)]
            if not _says_again(between, rules):
                hit = HazardHit(hit.hazard, hit.words, hit.start, "over")
                over_end = hit.start + len(hit.words)
        carried.append(hit)
    return carried


def _signed(hit: HazardHit, text: str, standalone: set[str], rules: SafetyRules) -> bool:
    """Whether a hazard that needs a second sign has one near it."""
    w = rules.sign_window
    near = text[max(0, hit.start - w) : hit.start + len(hit.words) + w]
    for name in rules.requires[hit.hazard]:
        if name == "any_hazard" and standalone:
            return True
        if any(p.search(near) for p in rules.signs.get(name, ())):
            return True
    return False


def read_safety(text: str, rules: SafetyRules | None = None) -> SafetyReading:
    """The hazards the caller's words describe (text is normalised here)."""
    rules = rules or load_rules()
    flat = normalise(text)
    hits = _hits(flat, rules)
    active = [h for h in hits if h.active]
    standalone = {h.hazard for h in active if h.hazard not in rules.requires}
    p1: dict[str, None] = {}  # in the order the caller first described them
    for h in active:
        if h.hazard in standalone or _signed(h, flat, standalone, rules):
            p1.setdefault(h.hazard)
    return SafetyReading(tuple(hits), tuple(p1))


# Characters either side of a danger that the context model reads (learned.py):
# files-CV over the corpus, 30, 45, 60 and 80 separated the disputed P1s about
# alike; 60 holds a clause or two, enough for 昨天…现在没有了.
CONTEXT_WINDOW = 60


def danger_contexts(text: str, reading: SafetyReading | None = None,
                    window: int = CONTEXT_WINDOW) -> list[str]:
    """The words around each hit that makes the call P1, the hit itself replaced by
    its hazard's name (…昨天晚上【gas】现在没有了…): what the context model judges,
    so that it learns how a danger is told (now, past, over, someone else's) rather
    than which danger it is."""
    return contexts_around(normalise(text), reading or read_safety(text), window)


def contexts_around(flat: str, reading: SafetyReading,
                    window: int = CONTEXT_WINDOW) -> list[str]:
    """danger_contexts for text already normalised (``flat``) and read."""
    return [f"{flat[max(0, h.start - window):h.start]}【{h.hazard}】"
            f"{flat[h.start + len(h.words):h.start + len(h.words) + window]}"
            for h in reading.hits if h.active and h.hazard in reading.hazards]


def read_basic_needs(text: str, rules: SafetyRules | None = None) -> SafetyReading:
    """The P2 problems (basic living affected) the caller's words describe: no
    water, power or gas at home, sewage backing up, the only toilet unusable, the
    lift out for someone high up, the front door that will not lock."""
    return read_safety(text, rules or load_rules(BASIC_NEEDS_FILE))
