"""The checks this product adds to the spec's section 4, from section 3's script
and what speech-analytics products measure: surname address, a committed
response time, the agent's share of the talk and longest monologue, and the
scripts for a silent, quiet, noisy or dialect-speaking caller.

Pure, like ``engine.py``: each check takes the call as the checks see it
(``base.Call``) and returns a ``RuleResult``; parameters and phrase lists are in
``rules.yaml``. A script rule applies only when the call shows its situation:
from the caller leg (no speech at all; acoustic levels the pipeline measured) or
from the agent's own words (请您大声一点 says the line was quiet). When only the
acoustics show it and the agent said nothing about it, a person decides
(``needs_review``): the agent may have heard the caller well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from callcenter.core import Evidence, RuleResult
from callcenter.qa.base import Call, Utterance, result

COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "东方", "慕容", "令狐", "皇甫", "公孙",
                     "夏侯", "尉迟", "长孙", "宇文", "司徒", "端木")


def _hits(c: Call, params: dict[str, Any], utts: Sequence[Utterance], key: str,
          min_conf: float = 0.0) -> list[Evidence]:
    terms = [str(t) for t in params.get(key) or []]
    return [u.evidence(i, j) for u in c.anchored(params, utts)
            for i, j, _ in c.find(params, u, terms, min_conf)]


# ---- surname address ---------------------------------------------------------------


def _caller_surname(c: Call, params: dict[str, Any]) -> tuple[str, Evidence, float] | None:
    """The caller's surname from their own words (我姓刘, 免贵姓欧阳, 我叫刘建国):
    the surname, where it was said, and how sure the recogniser was of it."""
    for u in c.caller:
        for pattern in params.get("caller_gives") or []:
            m = re.search(str(pattern), u.chars)
            if not m or not m.group("name"):
                continue
            name = m.group("name")
            size = 2 if name[:2] in COMPOUND_SURNAMES else 1
            i = m.start("name")
            return name[:size], u.evidence(i, i + size), u.min_conf(i, i + size)
    return None


def _surname_address(c: Call) -> RuleResult:
    p = c.p("surname_address")
    known = _caller_surname(c, p)
    if known is None:
        return result("surname_address", None, [], "the caller's surname was not given")
    surname, said, sure = known
    later = [u for u in c.real_agent() if u.seg.start >= said.start]
    if not later:
        return result("surname_address", None, [said], "the agent did not speak after it")
    titles = [str(t) for t in p.get("titles") or []]
    proper = [surname + t for t in titles]
    hits = [u.evidence(i, j) for u in later for i, j, _ in c.find(p, u, proper)]
    if hits:
        return result("surname_address", True, [said, *hits], f"addressed as {hits[0].text}")
    if c.source == "asr":
        # The recogniser garbles names: a title after any character may be the name.
        titled = [u.evidence(i, j) for u in later for i, j, _ in c.find(p, u, titles)]
        if titled:
            return result("surname_address", True, [said, *titled], "addressed with a title")
        if sure < float(p.get("min_conf", 0.8)):
            return result("surname_address", None, [said],
                          "surname heard unclearly; no title after it", needs_review=True)
    return result("surname_address", False, [said],
                  f"surname {surname} known, never used with 先生/女士")


# ---- response commitment ----------------------------------------------------------------


def _response_commitment(c: Call) -> RuleResult:
    p = c.p("response_commitment")
    if not c.needs_action:
        return result("response_commitment", None, [], "nothing needs action")
    if not c.real_agent():
        return result("response_commitment", None, [], "no agent speech")
    hits = _hits(c, p, c.real_agent(), "phrases")
    if hits:
        return result("response_commitment", True, hits[:3], f"committed: {hits[0].text}")
    return result("response_commitment", False, [],
                  "no response time promised before the call ended")


# ---- talk share and monologues ----------------------------------------------------------


def _talk(utts: Sequence[Utterance]) -> float:
    return sum(u.seg.duration for u in utts if u.chars)


def _talk_share(c: Call) -> RuleResult:
    p = c.p("talk_share")
    agent, caller = _talk(c.agent), _talk(c.caller)
    if agent + caller < float(p.get("min_speech_s", 60)) or not caller:
        return result("talk_share", None, [], "too little conversation to judge")
    share = agent / (agent + caller)
    detail = f"agent {share:.0%} of {agent + caller:.0f} s of speech"
    if share > float(p.get("max_share", 0.75)):
        longest = max(c.agent, key=lambda u: u.seg.duration)
        return result("talk_share", False, [longest.evidence()], detail)
    return result("talk_share", True, [], detail)


def _longest_monologue(c: Call) -> RuleResult:
    p = c.p("longest_monologue")
    stretches = _agent_stretches(c, float(p.get("join_gap_s", 2.0)))
    if not stretches:
        return result("longest_monologue", None, [], "no agent speech")
    start, end, text = max(stretches, key=lambda s: s[1] - s[0])
    detail = f"longest agent stretch {end - start:.0f} s"
    if end - start > float(p.get("max_s", 60)):
        return result("longest_monologue", False, [Evidence("agent", start, end, text[:60])],
                      detail)
    return result("longest_monologue", True, [], detail)


def _agent_stretches(c: Call, join_gap: float) -> list[tuple[float, float, str]]:
    """The agent's talk without the caller saying a word in between (backchannels
    such as 嗯 do not break a stretch)."""
    out: list[tuple[float, float, str]] = []
    for s in c.segments:
        chars = "".join(ch for ch in s.text if ch.strip())
        if s.leg == "caller":
            if chars and not c.is_backchannel(Utterance.of(s)):
                out.append((-1.0, -1.0, ""))  # the caller spoke: a break
            continue
        if out and out[-1][0] >= 0 and s.start - out[-1][1] <= join_gap:
            a, _, text = out[-1]
            out[-1] = (a, max(out[-1][1], s.end), text + s.text)
        else:
            out.append((s.start, s.end, s.text))
    return [x for x in out if x[0] >= 0]


# ---- the scripts of section 3 -----------------------------------------------------------


def _caller_silent(c: Call) -> bool:
    return not any(len(u.chars) >= 2 for u in c.caller)


def _waited_before_end(c: Call, p: dict[str, Any], after: float) -> bool:
    """Whether the agent left the caller ``wait_s`` after the last sentence (only
    the agent's own hang-up can cut the wait short)."""
    if c.facts.hangup_by != "agent":
        return True
    end = c.timeline.duration or after
    return end - after >= float(p.get("wait_s", 5)) - float(p.get("wait_tolerance_s", 1))


def _silent_line_script(c: Call) -> RuleResult:
    p = c.p("silent_line_script")
    agent = c.real_agent()
    if not _caller_silent(c) or not agent:
        return result("silent_line_script", None, [], "the caller was heard")
    greeted = [u for u in agent if c.find(p, u, [str(t) for t in p.get("greeting") or []])]
    greetings = [u.evidence() for u in greeted]
    closing = _hits(c, p, agent, "no_sound")
    missing = []
    if len(greeted) < int(p.get("greetings", 2)):
        missing.append(f"greeting said {len(greeted)} time(s)")
    if not closing:
        missing.append("no 'no sound, please call again' sentence")
    elif not _waited_before_end(c, p, closing[-1].end):
        missing.append("hung up without waiting")
    ev = greetings + closing or [agent[0].evidence()]
    if missing:
        return result("silent_line_script", False, ev, "silent caller: " + "; ".join(missing))
    return result("silent_line_script", True, ev, "silent-caller script followed")


def _situation(c: Call, p: dict[str, Any], acoustic: bool) -> tuple[list[Evidence], bool]:
    """Whether the call shows a script's situation: the agent's words naming it
    (evidence), or only the acoustics."""
    named = _hits(c, p, c.real_agent(), "noticed")
    return named, acoustic and not named


def _quiet_line_script(c: Call) -> RuleResult:
    p = c.p("quiet_line_script")
    level = c.facts.caller_speech_dbfs
    quiet = level is not None and not _caller_silent(c) and level < float(p["below_dbfs"])
    asked, unspoken = _situation(c, p, quiet)
    return _script("quiet_line_script", c, p, asked, unspoken,
                   f"caller speech at {level:.0f} dBFS" if level is not None else "")


def _noisy_line_script(c: Call) -> RuleResult:
    p = c.p("noisy_line_script")
    snr = c.facts.caller_snr_db
    noisy = snr is not None and snr < float(p["below_snr_db"])
    named, unspoken = _situation(c, p, noisy)
    return _script("noisy_line_script", c, p, named, unspoken,
                   f"caller line {snr:.0f} dB above its noise" if snr is not None else "")


def _dialect_script(c: Call) -> RuleResult:
    p = c.p("dialect_script")
    confs = [x for u in c.caller for x in u.confs]
    unclear = (c.source == "asr" and len(confs) >= int(p.get("min_words", 20))
               and sum(confs) / len(confs) < float(p.get("below_mean_conf", 0.45)))
    named, unspoken = _situation(c, p, unclear)
    return _script("dialect_script", c, p, named, unspoken,
                   "the caller's words were mostly unrecognisable" if unclear else "")


def _script(rule_id: str, c: Call, p: dict[str, Any], named: list[Evidence],
            unspoken: bool, measured: str) -> RuleResult:
    """A situation script: the agent names the situation with the script's
    sentence; if the agent ends the call over it, the script's closing sentence
    comes first and the agent waits."""
    if unspoken:
        return result(rule_id, None, [], f"{measured}; the agent said nothing about it",
                      needs_review=True)
    if not named:
        return result(rule_id, None, [], "situation not shown")
    polite = _hits(c, p, c.real_agent(), "script")
    problems = [] if polite else ["the script's request was not said politely"]
    if c.facts.hangup_by == "agent":
        ending = _hits(c, p, c.real_agent(), "closing")
        if not ending:
            problems.append("ended the call without the script's closing sentence")
        elif not _waited_before_end(c, p, ending[-1].end):
            problems.append("hung up without waiting")
        polite += ending
    if problems:
        return result(rule_id, False, named + polite, "; ".join(problems))
    return result(rule_id, True, named + polite, "script followed")


CHECKS: dict[str, Callable[[Call], RuleResult]] = {
    "surname_address": _surname_address,
    "response_commitment": _response_commitment,
    "talk_share": _talk_share,
    "longest_monologue": _longest_monologue,
    "silent_line_script": _silent_line_script,
    "quiet_line_script": _quiet_line_script,
    "noisy_line_script": _noisy_line_script,
    "dialect_script": _dialect_script,
}
