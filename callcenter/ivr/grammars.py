"""Spoken menu choices as data: the phrase grammars of ``grammars/<menu>.json``.

Pure (no recogniser here; reading files only): loading and checking a menu's
grammar, mapping recognised text to one of its choices (and measuring how much
of the phrase that named it another transcript holds), and expanding the
phrase families of ``grammars/families.yaml`` that the JSON files are built from
(``callcenter/ivr/grammar_build.py``). ``callcenter/ivr/speech.py`` feeds the
phrases to Vosk and maps what it hears with :meth:`MenuGrammar.match`.

A grammar file is ``{"choices": {choice_id: ["word word ...", ...]}}``; the words
are the Vosk model's, separated by spaces. Matching ignores spaces, punctuation
and ``[unk]``: an exact phrase wins, else the longest phrase inside the text
(ties go to the choice listed first: emergencies lead, so a safety word is
never outranked by an equally long ordinary one). No phrase: ``none``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from callcenter.ivr.menu import EMERGENCY, NAVIGATION_CHOICES, Menu, default_menu
from callcenter.settings import PROJECT_ROOT
from callcenter.text import normalise

GRAMMARS_DIR = PROJECT_ROOT / "grammars"
FAMILIES_PATH = GRAMMARS_DIR / "families.yaml"
NO_CHOICE = "none"
UNKNOWN_WORD = "[unk]"  # Vosk's word for speech outside the grammar
# Choices that win wherever they are named in an utterance (the menu file's
# emergencies and the generic one).
SAFETY_CHOICES = frozenset((*default_menu().emergencies, EMERGENCY))


class GrammarError(ValueError):
    """A grammar or family file is malformed or disagrees with the menu file."""


@dataclass(frozen=True, slots=True)
class PhraseMatch:
    """The choice a text names and the phrase (normalised) that named it."""

    choice: str
    phrase: str


@dataclass(frozen=True)
class MenuGrammar:
    """One menu's spoken choices: choice id -> phrases (words separated by spaces)."""

    name: str
    choices: Mapping[str, tuple[str, ...]]
    _exact: dict[str, str] = field(init=False, repr=False, compare=False)
    _by_length: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _safety: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _transitions: frozenset[tuple[str, str]] = field(init=False, repr=False, compare=False)
    _weights: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[str, str] = {}
        for choice, phrases in self.choices.items():
            for phrase in phrases:
                # setdefault: a phrase listed twice keeps the choice of higher precedence
                exact.setdefault(normalise(phrase), choice)
        exact.pop("", None)
        precedence = {choice: i for i, choice in enumerate(self.choices)}
        ordered = sorted(exact.items(), key=lambda kv: (-len(kv[0]), precedence[kv[1]]))
        transitions = {pair for p in self.phrases() for pair in _word_pairs(p.split())}
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_by_length", tuple(ordered))
        object.__setattr__(self, "_safety", tuple(
            (phrase, choice) for phrase, choice in ordered if choice in SAFETY_CHOICES))
        object.__setattr__(self, "_transitions", frozenset(transitions))
        object.__setattr__(self, "_weights", _character_weights(self.choices))

    def match(self, text: str) -> str:
        """The choice ``text`` names (see :meth:`find`), or ``none``."""
        found = self.find(text)
        return found.choice if found is not None else NO_CHOICE

    def find(self, text: str) -> PhraseMatch | None:
        """The choice ``text`` names and the phrase that names it: exact phrase; else
        a safety emergency named anywhere in it ("厨房着火了我要报修" is a fire before
        it is a repair: a missed P1 costs more than a P1 a person turns down); else
        the longest phrase inside. None when no phrase is in it."""
        clean = normalise(text)
        if not clean:
            return None
        exact = self._exact.get(clean)
        if exact is not None and exact in SAFETY_CHOICES:
            return PhraseMatch(exact, clean)
        safety = self._named_emergency(clean)
        if safety is not None:
            return safety
        if exact is not None:
            return PhraseMatch(exact, clean)
        return next((PhraseMatch(choice, phrase) for phrase, choice in self._by_length
                     if phrase in clean), None)

    def _named_emergency(self, clean: str) -> PhraseMatch | None:
        """An emergency phrase in ``clean`` that no longer ordinary phrase covers
        there ("不是很急" is an ordinary phrase around "很急": a negation)."""
        for phrase, choice in self._safety:
            start = clean.find(phrase)
            while start >= 0:
                if not self._covered(clean, start, start + len(phrase)):
                    return PhraseMatch(choice, phrase)
                start = clean.find(phrase, start + 1)
        return None

    def _covered(self, clean: str, start: int, end: int) -> bool:
        for phrase, choice in self._by_length:
            if len(phrase) <= end - start:
                return False  # ordered by length: no longer phrase is left
            if choice in SAFETY_CHOICES:
                continue
            at = clean.find(phrase, max(0, end - len(phrase)))
            if 0 <= at <= start and at + len(phrase) >= end:
                return True
        return False

    def is_phrase(self, text: str) -> bool:
        """Whether ``text`` is one whole phrase of the grammar, nothing around it."""
        return normalise(text) in self._exact

    def support(self, phrase: str, other: str) -> float:
        """How much of ``phrase`` another transcript ``other`` contains (0..1): the
        weighted share of the phrase's characters that occur in ``other``.

        A character weighs log(choices / choices whose phrases hold it): 我, 要, 一下
        come with most choices and prove little (a character of every choice weighs
        0), 投诉 or 煤气 name one. Characters, not words, because the two decodes
        split words differently and a homophone such as 保修 for 报修 still shares
        修. A phrase of weightless characters only is supported by anything (1.0)."""
        present = set(normalise(other))
        weighted = [(ch, self._weights.get(ch, 0.0)) for ch in normalise(phrase)]
        total = sum(weight for _, weight in weighted)
        if total <= 0:
            return 1.0
        return sum(weight for ch, weight in weighted if ch in present) / total

    def unseen_transitions(self, text: str) -> tuple[int, int]:
        """(word-to-word steps of ``text`` that no phrase takes, all its steps), the
        start and the end of the utterance counted as words, ``[unk]`` left out.

        Vosk turns the phrase list into a bigram language model whose back-off lets
        any grammar word follow any other; speech from outside the grammar comes
        out as such a string of unrelated words, often with a high confidence."""
        words = [w for w in text.split() if w != UNKNOWN_WORD]
        pairs = _word_pairs(words)
        return sum(pair not in self._transitions for pair in pairs), len(pairs)

    def phrases(self) -> list[str]:
        """Every phrase once, in file order."""
        return list(dict.fromkeys(p for ps in self.choices.values() for p in ps))

    def vosk_grammar(self) -> str:
        """The phrase list Vosk compiles, ``[unk]`` included so that speech outside
        the grammar is heard as unknown instead of forced onto a phrase."""
        return json.dumps([*self.phrases(), UNKNOWN_WORD], ensure_ascii=False)

    def words(self) -> set[str]:
        return {w for p in self.phrases() for w in p.split()}


def _character_weights(choices: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Character -> log(number of choices / number of choices using it): an inverse
    document frequency over the choices, 0 for a character every choice uses."""
    users: dict[str, int] = {}
    for phrases in choices.values():
        for ch in set("".join(normalise(p) for p in phrases)):
            users[ch] = users.get(ch, 0) + 1
    return {ch: math.log(len(choices) / n) for ch, n in users.items()}


def _word_pairs(words: Sequence[str]) -> list[tuple[str, str]]:
    padded = ["<s>", *words, "</s>"]
    return list(itertools.pairwise(padded))


# -- loading and checking ----------------------------------------------------


def grammar_from_dict(name: str, data: Any) -> MenuGrammar:
    """Check the JSON shape and build the grammar; every problem listed at once."""
    where = f"grammar {name!r}"
    if not isinstance(data, dict) or not isinstance(data.get("choices"), dict):
        raise GrammarError(f'{where}: expected an object {{"choices": {{id: [phrase, ...]}}}}')
    problems: list[str] = []
    choices: dict[str, tuple[str, ...]] = {}
    for choice, phrases in data["choices"].items():
        if not isinstance(phrases, list) or not phrases:
            problems.append(f"choice {choice!r} needs a non-empty list of phrases")
            continue
        bad = [p for p in phrases if not isinstance(p, str) or not normalise(p)]
        bad += [p for p in phrases if isinstance(p, str) and UNKNOWN_WORD in p]
        if bad:
            problems.append(f"choice {choice!r}: unusable phrases {bad[:3]!r}")
        choices[str(choice)] = tuple(" ".join(p.split()) for p in phrases if p not in bad)
    problems += _shared_phrases(choices)
    if problems:
        raise GrammarError(f"{where}: " + "; ".join(problems))
    return MenuGrammar(name, choices)


def _shared_phrases(choices: Mapping[str, Sequence[str]]) -> list[str]:
    """A phrase that names two choices makes the mapping depend on file order."""
    owner: dict[str, str] = {}
    problems = []
    for choice, phrases in choices.items():
        for phrase in phrases:
            first = owner.setdefault(normalise(phrase), choice)
            if first != choice:
                problems.append(f"phrase {phrase!r} is in both {first!r} and {choice!r}")
    return problems


def load_grammar(name: str, directory: Path = GRAMMARS_DIR) -> MenuGrammar:
    """``<directory>/<name>.json`` parsed and checked for shape (not against the menu)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise GrammarError(f"not a grammar name: {name!r}")
    path = directory / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GrammarError(f"grammar {name!r}: no file {path}") from None
    except (OSError, ValueError) as exc:
        raise GrammarError(f"grammar {name!r}: cannot read {path}: {exc}") from None
    return grammar_from_dict(name, data)


def declared_choices(grammar: str, menu: Menu) -> tuple[str, ...]:
    """The choices a caller may say where ``grammar`` listens: the options of the
    menus that use it, the emergencies (named at any menu), repeat and back."""
    nodes = [n for n in menu.menus.values() if n.grammar == grammar]
    if not nodes:
        raise GrammarError(f"no menu of the menu file uses grammar {grammar!r}")
    options = [c for n in nodes for c in n.choices]
    return tuple(dict.fromkeys([*menu.emergencies, *options, *NAVIGATION_CHOICES]))


def check_against_menu(grammar: MenuGrammar, menu: Menu) -> None:
    """Refuse a grammar whose choices differ from what the menu file declares."""
    declared = set(declared_choices(grammar.name, menu))
    missing = sorted(declared - set(grammar.choices))
    unknown = sorted(set(grammar.choices) - declared)
    problems = [f"no phrases for {missing}"] if missing else []
    problems += [f"choices the menu file does not declare: {unknown}"] if unknown else []
    if problems:
        raise GrammarError(f"grammar {grammar.name!r}: " + "; ".join(problems))


def grammar_names(menu: Menu) -> tuple[str, ...]:
    """The grammars the menu file uses, in menu order."""
    return tuple(dict.fromkeys(n.grammar for n in menu.menus.values() if n.grammar))


def load_menu_grammars(
    menu: Menu | None = None, directory: Path = GRAMMARS_DIR
) -> dict[str, MenuGrammar]:
    """Every grammar the menu file uses, loaded and checked against it."""
    menu = menu or default_menu()
    grammars = {}
    for name in grammar_names(menu):
        grammar = load_grammar(name, directory)
        check_against_menu(grammar, menu)
        grammars[name] = grammar
    return grammars


@lru_cache(maxsize=8)
def default_grammar(name: str) -> MenuGrammar:
    grammar = load_grammar(name)
    check_against_menu(grammar, default_menu())
    return grammar


def match_choice(text: str, grammar: str = "main") -> str:
    """The choice of the shipped grammar ``grammar`` that ``text`` names, or ``none``."""
    return default_grammar(grammar).match(text)


# -- phrase families (the source of the grammar files) -----------------------

_PART = re.compile(r"\(([^()]*)\)|\{(\w+)\}|([^\s(){}]+)")


def expand_template(template: str, slots: Mapping[str, Sequence[str]]) -> list[str]:
    """Every phrase a template stands for, spaces removed, in order, once each."""
    alternatives: list[Sequence[str]] = []
    for group, slot, literal in _PART.findall(template):
        if slot:
            if slot not in slots:
                raise GrammarError(f"template {template!r}: unknown slot {{{slot}}}")
            alternatives.append(slots[slot])
        elif literal:
            alternatives.append([literal])
        else:
            alternatives.append(group.split("|"))
    leftover = _PART.sub("", template).strip()
    if leftover:
        raise GrammarError(f"template {template!r}: cannot read {leftover!r}")
    phrases = ("".join(parts).replace(" ", "") for parts in itertools.product(*alternatives))
    return [p for p in dict.fromkeys(phrases) if p]


def family_phrases(families: Mapping[str, Any], grammar: str) -> dict[str, list[str]]:
    """Choice -> phrases (unsegmented) of one grammar, from the parsed family file."""
    slots = {str(k): [str(x or "") for x in v] for k, v in (families.get("slots") or {}).items()}
    spec = (families.get("menus") or {}).get(grammar)
    if not spec:
        raise GrammarError(f"family file: no menu {grammar!r}")
    templates: Mapping[str, Sequence[str]] = families.get("choices") or {}
    extra: Mapping[str, Sequence[str]] = spec.get("extra") or {}
    out: dict[str, list[str]] = {}
    claimed: set[str] = set()
    for choice in spec["choices"]:
        lines = [*templates.get(choice, ()), *extra.get(choice, ())]
        if not lines:
            raise GrammarError(f"family file: no templates for {choice!r} ({grammar})")
        phrases = _expanded(lines, slots)
        # a phrase already claimed by a choice of higher precedence stays there
        out[choice] = [p for p in phrases if p not in claimed]
        claimed.update(phrases)
    return out


def _expanded(templates: Iterable[str], slots: Mapping[str, Sequence[str]]) -> list[str]:
    phrases = (p for t in templates for p in expand_template(t, slots))
    return list(dict.fromkeys(normalise(p) for p in phrases if normalise(p)))


def load_families(path: Path = FAMILIES_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise GrammarError(f"{path}: not a mapping")
    return data


def segment(phrase: str, vocabulary: Iterable[str] | set[str], max_word: int = 8) -> list[str]:
    """``phrase`` as the fewest words of ``vocabulary`` (dynamic programming);
    raises GrammarError when some character is in no word at all."""
    vocab = vocabulary if isinstance(vocabulary, set | frozenset) else set(vocabulary)
    n = len(phrase)
    best: list[list[str] | None] = [[]] + [None] * n
    for end in range(1, n + 1):
        for start in range(max(0, end - max_word), end):
            head, word = best[start], phrase[start:end]
            if head is not None and word in vocab:
                candidate = [*head, word]
                current = best[end]
                if current is None or len(candidate) < len(current):
                    best[end] = candidate
    result = best[n]
    if result is None:
        raise GrammarError(f"phrase {phrase!r} cannot be spelt with the model's words")
    return result
