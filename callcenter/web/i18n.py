"""Every string of the pages goes through one translation table per language
(``i18n/<lang>.yaml``, the same keys in each; zh-CN is the default and the
fallback). Pages and their JavaScript read the same tables: templates call
``t(key)``, scripts get the table of the page's language as JSON."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from callcenter.auth.model import LANGUAGES

DEFAULT = "zh-CN"
LANG_COOKIE = "cc_lang"


@cache
def table(language: str) -> dict[str, str]:
    text = files("callcenter.web").joinpath(f"i18n/{language}.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"i18n/{language}.yaml is not a mapping")
    return {str(k): str(v) for k, v in data.items()}


def translator(language: str) -> Callable[..., str]:
    own, fallback = table(language), table(DEFAULT)

    def t(key: str, **values: Any) -> str:
        text = own.get(key) or fallback.get(key) or key
        return text.format(**values) if values else text

    return t


def pick(cookie: str | None, user_language: str | None, accept: str | None) -> str:
    """The language chosen in this browser, else the signed-in user's, else the
    browser's preference, else Chinese."""
    for choice in (cookie, user_language):
        if choice in LANGUAGES:
            return str(choice)
    for part in (accept or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT
