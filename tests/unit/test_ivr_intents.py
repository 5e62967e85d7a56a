"""Recognised text -> IVR intent, checked on the texts of the shared IVR labels."""

from __future__ import annotations

import csv
import json

import pytest

from callcenter.ivr.engine import INTENTS, load_menu
from callcenter.ivr.intents import IntentMatcher, match_intent, normalise
from callcenter.settings import PROJECT_ROOT, SHARED_DIR

LABELS = SHARED_DIR / "scenarios" / "ivr" / "labels.tsv"
GRAMMAR = PROJECT_ROOT / "grammars" / "menu.json"


def read_labels() -> list[tuple[str, str, str]]:
    if not LABELS.is_file():
        pytest.skip(f"shared test data missing: {LABELS}")
    with LABELS.open(encoding="utf-8", newline="") as fh:
        return [(r[0], r[1], r[2]) for r in csv.reader(fh, delimiter="\t") if r]


def test_labels_texts_map_to_their_intent() -> None:
    rows = read_labels()
    assert len(rows) >= 20
    wrong = [(i, text, want, match_intent(text)) for i, text, want in rows]
    wrong = [w for w in wrong if w[2] != w[3]]
    assert wrong == []


def test_labels_use_known_intents() -> None:
    assert {intent for _, _, intent in read_labels()} <= set(INTENTS)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("我 要 报修", "repair"),  # Vosk separates words by spaces
        ("[unk] 投诉 [unk]", "complaint"),
        ("转人工。", "agent"),
        ("我要投诉维修师傅", "complaint"),  # complaint wins over repair
        ("", "none"),
        ("[unk]", "none"),
        ("喂喂喂", "none"),
    ],
)
def test_normalisation_and_precedence(text: str, intent: str) -> None:
    assert match_intent(text) == intent


def test_normalise() -> None:
    assert normalise(" 我 要，报修！[unk] ") == "我要报修"


def test_matcher_uses_given_keywords_in_order() -> None:
    matcher = IntentMatcher({"agent": ["客服"], "complaint": ["投诉"]})
    assert matcher.match("投诉客服") == "agent"
    assert matcher.match("咨询") == "none"


def test_grammar_is_a_vosk_phrase_list_covering_the_menu() -> None:
    phrases = json.loads(GRAMMAR.read_text(encoding="utf-8"))
    assert isinstance(phrases, list) and all(isinstance(p, str) for p in phrases)
    assert "[unk]" in phrases
    matched = {match_intent(p) for p in phrases if p != "[unk]"}
    # every phrase is a menu choice, and every spoken intent has a phrase
    assert "none" not in matched
    assert matched == set(load_menu().keywords)


def test_grammar_covers_every_labelled_menu_choice() -> None:
    phrases = {normalise(p) for p in json.loads(GRAMMAR.read_text(encoding="utf-8"))}
    missing = [text for _, text, intent in read_labels() if intent != "none"]
    assert [t for t in missing if normalise(t) not in phrases] == []
