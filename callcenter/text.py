"""The one normaliser for matching words in speech: typed text and recognised text
alike (recognised speech has spaces between words and no punctuation)."""

from __future__ import annotations

import re
import unicodedata

_STRIP = re.compile(r"\[unk\]|\s+")


def normalise(text: str) -> str:
    """NFKC, no ``[unk]``, no spaces, no punctuation; lower-case Latin letters."""
    text = _STRIP.sub("", unicodedata.normalize("NFKC", text))
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("P")).lower()
