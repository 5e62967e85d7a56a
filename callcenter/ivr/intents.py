"""Recognised text -> IVR intent, by keywords from ``callcenter/ivr/menu.yaml``.

Pure: no recogniser here. Vosk returns words separated by spaces and may
emit ``[unk]``; both are removed before matching. When keywords of several
intents occur, the intent listed first in ``menu.yaml`` wins. Text with no
keyword is ``none`` (not a menu choice).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from callcenter.ivr.engine import Menu, default_menu
from callcenter.text import normalise

NO_INTENT = "none"
class IntentMatcher:
    """Keyword matcher; ``keywords`` order is the precedence order."""

    def __init__(self, keywords: Mapping[str, Sequence[str]]) -> None:
        self._keywords = [
            (intent, tuple(normalise(w) for w in words if normalise(w)))
            for intent, words in keywords.items()
        ]

    @classmethod
    def from_menu(cls, menu: Menu | None = None) -> IntentMatcher:
        return cls((menu or default_menu()).keywords)

    def match(self, text: str) -> str:
        clean = normalise(text)
        if not clean:
            return NO_INTENT
        for intent, words in self._keywords:
            if any(word in clean for word in words):
                return intent
        return NO_INTENT


_default: IntentMatcher | None = None


def match_intent(text: str) -> str:
    """The intent of ``text`` with the default menu's keywords."""
    global _default
    if _default is None:
        _default = IntentMatcher.from_menu()
    return _default.match(text)
