"""Address, caller name and phone number from what was said in a call.

Pure functions over text and timelines. The marker words (栋/幢/号楼/单元/室 and
their ASR homophones), the surname list and the honorifics are data in
``terms.yaml`` (section ``address``/``names``), not code.

Numbers arrive in every spelling a call can produce: Arabic digits (``8栋``),
digit-by-digit Chinese numerals (``一七零二``, ``幺零幺``), positional numerals
(``六百零一``, ``一千七百零二``, ``二十三``) and, from the recognizer, numerals
split by spaces (``一 七 零 二``). All are normalised to Arabic digit strings the
way ``meta.json`` stores them (``"8"``, ``"2"``, ``"1702"``). A room number is
read as homes are numbered, its floor then the flat's place on that floor (1702:
floor 17, flat 02), which tells a room from other numbers and from a misheard one.

Caller name: a call rarely yields a full name (callers say 我姓刘, agents then say
刘女士), so ``extract_caller_name`` returns what the call gives: the full name when
the caller says it (我叫刘思雨 / 我姓欧阳，欧阳倩), otherwise surname + the honorific
the agent used (刘女士, 赵阿姨), otherwise the bare surname. The residents table
may hold the full name; matching is the caller of this module's business.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cn2an

from callcenter.asr.numbers import UNKNOWN_WORD
from callcenter.core import Segment, Timeline

DIGITS = {
    "零": 0, "〇": 0, "0": 0,
    "一": 1, "幺": 1, "1": 1,
    "二": 2, "两": 2, "2": 2,
    "三": 3, "3": 3,
    "四": 4, "4": 4,
    "五": 5, "5": 5,
    "六": 6, "6": 6,
    "七": 7, "7": 7,
    "八": 8, "8": 8,
    "九": 9, "9": 9,
}  # fmt: skip
UNITS = {"十": 10, "百": 100, "千": 1000}
NUMERAL_CHARS = "零〇一幺二两三四五六七八九十百千0123456789"
_NUM = f"[{NUMERAL_CHARS}]+"
# A room number is its floor, then the flat's place on that floor. Homes have a few
# flats a floor (一梯两户 to 一梯八户, a tower a dozen), and no home is above the 80th.
MAX_FLOOR = 80
MAX_FLATS_PER_FLOOR = 12
# A read-back the caller confirmed scores as the caller's best mention (an answer
# to the address question, after 我家/我住), within this pause.
CONFIRMED_READ_BACK = 3.0
CONFIRM_WITHIN_S = 4.0
# A caller's value the agent also says (the spec's read-back, 复述确认) was heard
# twice, by two voices on two legs: it outranks the caller's other values of that
# field, as an answer to the address question outranks a passing mention, though
# not a correction (a read-back may repeat what the caller then corrects).
READ_BACK_AGREES = 1.5
# Stands in for the characters of a building name already read (not a numeral, a
# marker or a clause break), so that offsets stay as they were.
_MASK = "□"
# Characters that separate clauses: the address of one clause never spans them.
PUNCT = set("，。！？、；：,.!?;:…—~～“”\"'()（）【】[] \t\r\n")


def numeral_to_digits(token: str) -> str:
    """One numeral token to an Arabic digit string ("" when it is not a number).

    Digit-by-digit spellings keep leading zeros (工号零三五 -> "035"); positional
    spellings are evaluated by cn2an (六百零一 -> "601", 十二 -> "12", the spoken
    short-hand 一千七 -> "1700"), and malformed ones (五六十) are no number.
    """
    token = "".join(ch for ch in token if not ch.isspace())
    if not token:
        return ""
    if _by_digit(token):
        if all(ch in DIGITS for ch in token):
            return "".join(str(DIGITS[ch]) for ch in token)
        return ""
    try:
        value = cn2an.cn2an(token, "normal")
    except (ValueError, KeyError):  # KeyError: some malformed ones, 二十零
        return ""
    return str(value) if isinstance(value, int) and value >= 0 else ""


def spoken_numbers(digits: str) -> list[str]:
    """How a number written in Arabic digits is said: as written, positionally
    (12 -> 十二; 2 also 两), digit by digit (12 -> 一二, 幺二). Most said first."""
    forms = [digits]
    if digits.isdigit() and not digits.startswith("0"):
        forms.append(cn2an.an2cn(digits, "low"))
    by_digit = "".join("零一二三四五六七八九"[int(d)] for d in digits)
    forms += [by_digit, by_digit.replace("一", "幺")]
    if digits == "2":
        forms.append("两")
    return list(dict.fromkeys(forms))


def said_name(name: str) -> str:
    """A building name as it is said: its numbers spelt positionally (紫荆苑3栋 ->
    紫荆苑三栋), which the speech model has words for."""
    return re.sub(r"\d+", lambda m: spoken_numbers(m.group(0))[1], name)


def _name_pattern(name: str) -> str:
    """A regular expression for a building name however its numbers are said or
    written (紫荆苑3栋: 紫荆苑3栋, 紫荆苑三栋)."""
    parts = re.split(r"(\d+)", compact(name))
    return "".join(
        "(?:" + "|".join(re.escape(f) for f in spoken_numbers(p)) + ")" if p.isdigit()
        else re.escape(p)
        for p in parts
    )


def compact(text: str) -> str:
    """Drop whitespace that ASR puts between numerals and words (一 七 零 二 -> 一七零二)."""
    return re.sub(r"\s+", "", text)


@dataclass(slots=True)
class AddressTerms:
    building_markers: list[str]
    building_homophones: list[str]
    building_homophones_before_unit: list[str]
    unit_markers: list[str]
    room_markers: list[str]
    room_not_followed_by: list[str]
    room_not_preceded_by: list[str]
    self_markers: list[str]
    other_markers: list[str]
    correction_markers: list[str]
    question_markers: list[str]
    # A caller's whole answer that confirms what the agent just read back.
    confirmations: list[str] = field(default_factory=list)
    # The estate's named buildings (the residents directory's, not terms.yaml's).
    building_names: list[str] = field(default_factory=list)


@dataclass(slots=True)
class NameTerms:
    surnames: list[str]
    honorifics: list[str]
    not_names: list[str]
    # The agent asking for the caller's name: the caller's answer gives it.
    question_markers: list[str] = field(default_factory=list)
    # How a surname is said where that is not its everyday reading ("覃 qin2"):
    # the name pass listens for it by its sound.
    surname_readings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Mention:
    field: str
    value: str
    score: float
    order: tuple[int, int, int]


def _alternation(items: Sequence[str]) -> str:
    return "|".join(re.escape(i) for i in sorted(items, key=len, reverse=True))


def _clauses(text: str) -> list[tuple[int, str]]:
    """Split into clauses at punctuation, keeping each clause's start offset."""
    out: list[tuple[int, str]] = []
    start = 0
    for i, ch in enumerate(text + "。"):
        if ch in PUNCT:
            if i > start:
                out.append((start, text[start:i]))
            start = i + 1
    return out


def _mentions_in(
    text: str, terms: AddressTerms, base: float, order: tuple[int, int]
) -> list[_Mention]:
    """Every building/unit/room mention in one stretch of speech, with a plausibility score."""
    found: list[_Mention] = []
    b_alt = _alternation(terms.building_markers)
    u_alt = _alternation(terms.unit_markers)

    def add(field: str, value: str, pos: int, penalty: float = 0.0) -> None:
        score = base - penalty
        before = text[max(0, pos - 6) : pos]
        if any(s in before for s in terms.self_markers):
            score += 2.0
        if any(s in before for s in terms.other_markers):
            score -= 3.0
        found.append(_Mention(field, value, score, (*order, pos)))

    named = [(n, re.compile(_name_pattern(n))) for n in
             sorted(terms.building_names, key=len, reverse=True)]
    for off, clause in _clauses(text):
        for name, pattern in named:
            for m in pattern.finditer(clause):
                add("building", name, off + m.start())
                # Its numbers are the name's, not a building or a room of their own.
                clause = clause[: m.start()] + _MASK * len(m.group(0)) + clause[m.end() :]
        for m in re.finditer(f"({_NUM})({b_alt})", clause):
            value = numeral_to_digits(m.group(1))
            if value and 0 < int(value) < 200:
                add("building", str(int(value)), off + m.start())
        # "N楼" directly followed by "M单元" is a building (三楼二单元), otherwise a floor.
        for m in re.finditer(f"({_NUM})楼(?=({_NUM})({u_alt}))", clause):
            value = numeral_to_digits(m.group(1))
            if value and 0 < int(value) < 200:
                add("building", str(int(value)), off + m.start())
        # Homophones the recognizer writes for 栋 (八栋 -> 八动): a building, ranked
        # below a properly marked one.
        if terms.building_homophones:
            h_alt = _alternation(terms.building_homophones)
            for m in re.finditer(f"({_NUM})({h_alt})", clause):
                value = numeral_to_digits(m.group(1))
                if value and 0 < int(value) < 200 and not clause[m.end() :].startswith("不"):
                    add("building", str(int(value)), off + m.start(), 0.5)
        # 幢/栋 heard as a common word (二十二幢 -> 二十二成): only before a unit.
        if terms.building_homophones_before_unit:
            hu_alt = _alternation(terms.building_homophones_before_unit)
            for m in re.finditer(f"({_NUM})({hu_alt})(?=[\u4e00-\u9fff]{{0,2}}({u_alt}))", clause):
                value = numeral_to_digits(m.group(1))
                if value and 0 < int(value) < 200:
                    add("building", str(int(value)), off + m.start(), 0.5)
        # ASR mangles the building marker (二十三栋 -> 二十三多) but keeps the unit:
        # "N?M单元" still names building N, below a properly marked one.
        for m in re.finditer(f"({_NUM})[\u4e00-\u9fff](?=({_NUM})({u_alt}))", clause):
            value = numeral_to_digits(m.group(1))
            if value and 0 < int(value) < 200:
                add("building", str(int(value)), off + m.start(), 0.5)
        for m in re.finditer(f"({_NUM})({u_alt})", clause):
            value = numeral_to_digits(m.group(1))
            if value and 0 < int(value) < 30:
                add("unit", str(int(value)), off + m.start())
        for m in re.finditer(_NUM, clause):
            after = clause[m.end() :]
            room = _room_value(text[: off + m.start()], m.group(0), after, terms)
            if room:
                add("room", room, off + m.start(), 1.0 if _bare_number(after, terms) else 0.0)
    return found


def _room_value(before: str, token: str, after: str, terms: AddressTerms) -> str:
    """The room number a numeral token stands for, or "" when it is something else."""
    if any(before.endswith(s) for s in terms.room_not_preceded_by):
        return ""
    if re.search(r"负[一二三四五六七八九1-9]层[，,、]?$", before):
        return ""
    run_on = _room_run_into_floor(token, after)
    if run_on:
        return run_on
    blocked = [s for s in terms.room_not_followed_by if after.startswith(s)]
    if blocked and not any(after.startswith(s) for s in terms.other_markers) and not (
        blocked == ["楼"] and _by_digit(token) and not _names_a_unit(after[1:], terms)
    ):
        # 四零二楼 is room 402 all the same: no floor is said digit by digit in three
        # or four digits, so the 楼 begins the next words (楼上) or is the
        # recogniser's; only a unit after it makes it a building (一零二楼三单元).
        return ""
    value = numeral_to_digits(token)
    if not _plausible_room(value):
        return ""
    return _on_stated_floor(before, value)


def _names_a_unit(text: str, terms: AddressTerms) -> bool:
    return re.match(f"{_NUM}({_alternation(terms.unit_markers)})", text) is not None


def _by_digit(token: str) -> bool:
    return not any(ch in UNITS for ch in token)


def _plausible_room(value: str) -> bool:
    """A room number is its floor, then the flat's place on that floor (1702: floor
    17, flat 02); a number whose last two digits no flat has is something else (119,
    a parking space 226) or misheard (an extra digit: 4021)."""
    if len(value) not in (3, 4):
        return False
    floor, door = int(value[:-2]), int(value[-2:])
    return 1 <= floor <= MAX_FLOOR and 1 <= door <= MAX_FLATS_PER_FLOOR


def _room_run_into_floor(token: str, after: str) -> str:
    """A room said digit by digit run together with its floor said positionally
    (一四零二十四楼: room 1402 on floor 14), read where the floor agrees with the
    room; "" otherwise (一四零 then 二十四楼 would not)."""
    if not after.startswith(("楼", "层")) or _by_digit(token):
        return ""
    for cut in range(len(token) - 1, 2, -1):
        head, tail = token[:cut], token[cut:]
        if not _by_digit(head) or _by_digit(tail):
            continue
        room, floor = numeral_to_digits(head), numeral_to_digits(tail)
        if _plausible_room(room) and room[:-2] == floor:
            return room
    return ""


def _on_stated_floor(before: str, room: str) -> str:
    """The room on the floor the caller named right before it: 十一楼一零一 is 1101
    (the recogniser lost a digit of the floor the room begins with); a room whose
    floor is not part of the named floor's is left as said."""
    m = re.search(f"({_NUM})[楼层]的?$", before)
    floor = numeral_to_digits(m.group(1)) if m else ""
    said = room[:-2]
    if not floor or floor == said or not 1 <= int(floor) <= MAX_FLOOR:
        return room
    return floor + room[-2:] if floor.startswith(said) or floor.endswith(said) else room


def _bare_number(after: str, terms: AddressTerms) -> bool:
    """A room number neither ending its clause (一七零二。) nor marked (室/号): ASR text
    has no punctuation, so it still counts, below a marked or clause-final one."""
    return (
        bool(after)
        and not any(after.startswith(r) for r in terms.room_markers)
        and (after[0] != "的")
    )


def extract_address(text: str, terms: AddressTerms | None = None) -> tuple[str, str, str]:
    """(building, unit, room) from one stretch of speech; "" for what is not said.

    Within the text, the part after a correction (哦不对, 说错了) wins; a room
    after 我家/我住 beats one after 楼上/对门.
    """
    terms = terms or _default_address_terms()
    return _resolve(_scan_text(compact(text), terms, 0.0, 0))


def _scan_text(text: str, terms: AddressTerms, base: float, seg_index: int) -> list[_Mention]:
    found: list[_Mention] = []
    for p_index, part in enumerate(_split_corrections(text, terms.correction_markers)):
        # A correction outranks what it corrects; a turn that opens with one (不对，
        # 是十九栋) corrects the turn before, the agent's read-back or the caller's own.
        if part:
            found += _mentions_in(part, terms, base + 3.0 * p_index, (seg_index, p_index))
    return found


def _split_corrections(text: str, markers: Sequence[str]) -> list[str]:
    """``text`` cut at each correction marker (the first part empty when it opens
    with one)."""
    if not markers:
        return [text]
    return re.split(_alternation(markers), text)


def _resolve(mentions: Sequence[_Mention]) -> tuple[str, str, str]:
    best: dict[str, _Mention] = {}
    for m in sorted(mentions, key=lambda m: m.order):
        cur = best.get(m.field)
        if cur is None or m.score >= cur.score:
            best[m.field] = m
    return (
        best["building"].value if "building" in best else "",
        best["unit"].value if "unit" in best else "",
        best["room"].value if "room" in best else "",
    )


def extract_address_from_timeline(
    timeline: Timeline, terms: AddressTerms | None = None
) -> tuple[str, str, str]:
    """The caller's home address over a whole call.

    The caller's own words count first; an answer to the agent's address question
    (哪栋/几单元/哪一户) counts more; later mentions beat earlier equal ones. The
    agent's words (the read-back) only fill fields the caller never gave, unless
    the caller's next turn confirms them and nothing else (对, 是的): then they are
    the address both agreed on, as strong as the caller's best (a correction the
    caller makes after it still wins, being later). A value of the caller's that
    the agent repeats later counts more (``READ_BACK_AGREES``): from speech,
    where the caller gave two readings of a field, the one the agent repeats is
    the one both heard. The caller's reply to a read-back counts as much for the
    fields read back (it confirms or corrects them).
    """
    terms = terms or _default_address_terms()
    callers: list[_Mention] = []
    agents: list[_Mention] = []
    prev_agent = ""
    read_back: set[str] = set()  # fields the agent's last turn said, until the reply
    read_back_end = 0.0
    replies: list[_Mention] = []  # the caller's mentions of the fields read back to them
    for index, seg in enumerate(timeline.segments):
        text = compact(seg.text)
        if seg.leg == "agent":
            prev_agent = text
            confirmed = _confirmed_by_caller(timeline.segments, index, terms)
            said = _scan_text(text, terms, CONFIRMED_READ_BACK if confirmed else -10.0, index)
            agents += said
            read_back, read_back_end = {m.field for m in said}, seg.end
            continue
        base = 1.0 if any(q in prev_agent for q in terms.question_markers) else 0.0
        replying = read_back if seg.start - read_back_end <= CONFIRM_WITHIN_S else set()
        said = _scan_text(text, terms, base, index)
        callers += said
        replies += [m for m in said if m.field in replying]
        read_back = set()
    callers = [replace(m, score=m.score + READ_BACK_AGREES)
               if m in replies or _repeated(m, agents) else m for m in callers]
    return _resolve([*callers, *agents])


def _repeated(mention: _Mention, agents: Sequence[_Mention]) -> bool:
    """Whether the agent says the caller's ``mention`` again later in the call."""
    return any(a.field == mention.field and a.value == mention.value
               and a.order > mention.order for a in agents)


def _confirmed_by_caller(segments: Sequence[Segment], index: int, terms: AddressTerms
                         ) -> bool:
    """Whether the caller's next turn, soon after agent segment ``index``, is only a
    confirmation (对, 是的, 嗯对): no correction, no address of its own."""
    if not terms.confirmations:
        return False
    said = segments[index]
    reply = next((s for s in segments[index + 1:] if s.leg == "caller"), None)
    if reply is None or reply.start - said.end > CONFIRM_WITHIN_S:
        return False
    words = "".join(ch for ch in compact(reply.text) if ch not in PUNCT)
    pattern = f"(?:{_alternation(terms.confirmations)})+[啊呀吧哦呢的了]*"
    return bool(words) and re.fullmatch(pattern, words) is not None


def extract_address_heard(timeline: Timeline, terms: AddressTerms | None = None,
                          buildings: Sequence[str] = ()) -> tuple[str, str, str]:
    """The caller's home address, from the second pass's readings where there are
    some (``Timeline.addresses``: the first pass writes numbers as homophones), each
    field the first pass's where the readings leave it open. Where the address was
    read again with shifted windows (``Timeline.address_variants``), a field the
    unshifted reading left open is the value those readings all agree on, before
    the first pass's. ``buildings``: the estate's named buildings, which an address
    may give instead of a number."""
    terms = terms or _default_address_terms()
    if buildings:
        terms = replace(terms, building_names=[*terms.building_names, *buildings])
    first = extract_address_from_timeline(timeline, terms)
    if not timeline.addresses:
        return first
    heard = extract_address_from_timeline(with_address_readings(timeline), terms)
    shifted = [extract_address_from_timeline(with_address_readings(timeline, reading), terms)
               for reading in timeline.address_variants]
    building, unit, room = (h or _agreed([s[i] for s in shifted]) or f
                            for i, (h, f) in enumerate(zip(heard, first, strict=True)))
    return building, unit, room


def _agreed(values: Sequence[str]) -> str:
    """The value every shifted reading of a field heard alike (two at least), else
    none: a lone reading is no surer than the unshifted one that heard nothing."""
    return values[0] if len(values) >= 2 and len(set(values)) == 1 else ""


def with_address_readings(timeline: Timeline, readings: Sequence[Segment] | None = None
                          ) -> Timeline:
    """The timeline with each segment the address pass read again replaced by those
    readings (``timeline.addresses`` unless others are given; their unknown words as
    pauses)."""
    if readings is None:
        readings = timeline.addresses
    segments = []
    for seg in timeline.segments:
        overlapping = [n for n in readings
                       if n.leg == seg.leg and n.start < seg.end and seg.start < n.end]
        if overlapping:
            text = "，".join(n.text.replace(UNKNOWN_WORD, "，") for n in overlapping)
            seg = replace(seg, text=text, words=[])
        segments.append(seg)
    return Timeline(segments, timeline.duration)


def extract_phone(timeline: Timeline, default: str = "") -> str:
    """The caller ID when known, otherwise a mobile number the caller spells out (as
    the second pass read it, or the first)."""
    if default:
        return default
    said = [n for n in timeline.numbers if n.leg == "caller"]
    for seg in [*said, *timeline.by_leg("caller")]:
        for m in re.finditer(_NUM, compact(seg.text)):
            digits = numeral_to_digits(m.group(0))
            if re.fullmatch(r"1[3-9]\d{9}", digits) or re.fullmatch(r"0\d{9,11}", digits):
                return digits
    return ""


def extract_caller_name(timeline: Timeline, terms: NameTerms | None = None) -> str:
    """Full name when said (我叫刘思雨), else surname + the agent's honorific (刘女士),
    else the bare surname (刘), else the surname the name pass heard; "" when the
    call yields none."""
    terms = terms or _default_name_terms()
    surnames = sorted(terms.surnames, key=len, reverse=True)
    s_alt = _alternation(surnames)
    surname = ""
    full = ""
    for seg in timeline.by_leg("caller"):
        text = compact(seg.text)
        m = re.search(r"(?:我叫|户主叫|名字叫|名字是)([\u4e00-\u9fff]{2,4})", text)
        if m and m.group(1)[:1] in _surname_heads(surnames):
            full = _trim_name(m.group(1), surnames)
        # 我姓刘 / 免贵姓罗 / an answer that starts with 姓刘; not 管家姓李, 我爸姓龚.
        m = re.search(rf"(?:^|[，。！？,.!?]|我|免贵)姓({s_alt})", text)
        if m:
            surname = m.group(1)
            # 我姓欧阳，欧阳倩: the full name right after.
            m2 = re.search(
                rf"{re.escape(surname)}[\u4e00-\u9fff]{{1,2}}(?=[，。,.！!？?]|$)", text[m.end() :]
            )
            if m2 and m2.group(0) != surname and not _has_honorific(m2.group(0), terms):
                full = m2.group(0)
    if full:
        return full
    h_alt = _alternation(terms.honorifics)
    titled: list[tuple[str, str]] = []
    for seg in timeline.by_leg("agent"):
        for m in re.finditer(rf"({s_alt})({h_alt})", compact(seg.text)):
            if m.group(0) in terms.not_names:
                continue
            titled.append((m.group(1), m.group(2)))
    if surname:
        for s, h in titled:
            if s == surname:
                return s + h
        return surname
    if titled:
        s, h = titled[-1]
        return s + h
    return _surname_heard(timeline, s_alt)


def _surname_heard(timeline: Timeline, s_alt: str) -> str:
    """The surname from the name pass's readings (``Timeline.names``: 我姓刘 read
    with a grammar of the surname list where the first pass heard no name), the
    last one given; only after 姓 or 叫: a lone surname in the reading may be any
    other syllable the grammar forced into one."""
    found = ""
    for reading in timeline.names:
        if reading.leg == "caller":
            for m in re.finditer(rf"(?:姓|叫)({s_alt})", reading.text):
                found = m.group(1)
    return found


def _surname_heads(surnames: Sequence[str]) -> set[str]:
    return {s[0] for s in surnames}


def _trim_name(name: str, surnames: Sequence[str]) -> str:
    for cut in ("电话", "就是", "我家", "住"):
        if cut in name:
            name = name[: name.index(cut)]
    return name


def _has_honorific(text: str, terms: NameTerms) -> bool:
    return any(h in text for h in terms.honorifics)


def _default_address_terms() -> AddressTerms:
    from callcenter.tickets.classifier import load_terms

    return load_terms().address


def _default_name_terms() -> NameTerms:
    from callcenter.tickets.classifier import load_terms

    return load_terms().names
