"""The pure rules of sign-in and roles, and the translation tables."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from callcenter.auth.model import (
    MANAGERS,
    PUBLIC,
    SIGNED_IN,
    STAFF,
    Access,
    Decision,
    Principal,
    Role,
    allow,
    decide,
    may_change_agent,
    may_hear,
    own_agent,
    password_problem,
)
from callcenter.auth.passwords import hash_password, new_password, verify_password
from callcenter.web import i18n
from callcenter.web.pages import safe_next

AGENT = Principal(1, "ag1", Role.AGENT, agent_id="a1")
LOOSE_AGENT = Principal(2, "ag9", Role.AGENT)  # no agent linked
QA = Principal(3, "qa1", Role.QA)
BOSS = Principal(4, "sup1", Role.SUPERVISOR)
ADMIN = Principal(5, "adm1", Role.ADMIN)


def test_decide() -> None:
    assert decide(PUBLIC, None, loopback=False) is Decision.ALLOW
    assert decide(SIGNED_IN, None, loopback=True) is Decision.SIGN_IN
    assert decide(SIGNED_IN, AGENT, loopback=False) is Decision.ALLOW
    assert decide(Access(STAFF), AGENT, loopback=False) is Decision.FORBIDDEN
    assert decide(allow(Role.ADMIN), BOSS, loopback=False) is Decision.FORBIDDEN
    metrics = Access(MANAGERS, loopback_anonymous=True)
    assert decide(metrics, None, loopback=True) is Decision.ALLOW
    assert decide(metrics, None, loopback=False) is Decision.SIGN_IN
    assert decide(metrics, QA, loopback=True) is Decision.FORBIDDEN


def test_ownership() -> None:
    assert own_agent(AGENT) == "a1"
    # Sees nothing, not everything: no call has an empty agent id.
    assert own_agent(LOOSE_AGENT) == ""
    assert own_agent(QA) is None and own_agent(ADMIN) is None
    assert may_hear(AGENT, "a1") and not may_hear(AGENT, "a2") and not may_hear(AGENT, None)
    assert not may_hear(LOOSE_AGENT, None)
    assert may_hear(QA, "a2") and may_hear(BOSS, None)
    assert may_change_agent(AGENT, "a1") and not may_change_agent(AGENT, "a2")
    assert not may_change_agent(QA, "a1") and may_change_agent(BOSS, "a2")


@pytest.mark.parametrize(("password", "ok"), [
    ("short", False), ("aaaaaaaaaaaa", False), ("ag1-secret-2026", False),
    ("tea kettle lamp", True)])
def test_password_rules(password: str, ok: bool) -> None:
    assert (password_problem(password, "ag1") is None) is ok


def test_hashing() -> None:
    stored = hash_password("tea kettle lamp")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "tea kettle lamp")
    assert not verify_password(stored, "tea kettle lamb")
    assert not verify_password(None, "anything")  # unknown user: same work, no match
    assert not verify_password("not a hash", "x")
    made = new_password()
    assert len(made) == 16 and password_problem(made, "someone") is None


@pytest.mark.parametrize(("target", "expected"), [
    ("/calls/1", "/calls/1"), (None, "/"), ("//evil.example", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("calls", "/"),
    ("/x\r\nSet-Cookie: a=b", "/")])
def test_no_open_redirect(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_language_choice() -> None:
    assert i18n.pick(None, None, None) == "zh-CN"
    assert i18n.pick(None, None, "en-GB,en;q=0.8") == "en"
    assert i18n.pick(None, "en", "zh-CN") == "en"
    assert i18n.pick("zh-CN", "en", "en") == "zh-CN"  # this browser's choice first
    assert i18n.pick("xx", None, "fr") == "zh-CN"
    assert i18n.translator("en")("login.throttled", seconds=30).endswith("30 s.")


def test_translation_tables_match_and_cover_the_templates() -> None:
    zh, en = i18n.table("zh-CN"), i18n.table("en")
    assert set(zh) == set(en)
    used: set[str] = set()
    folder = files("callcenter.web").joinpath("templates")
    for template in folder.iterdir():
        used |= set(re.findall(r"""\bt\(\s*"([a-z_.]+)""", template.read_text("utf-8")))
    prefixes = {u for u in used if u.endswith(".")}  # t("role." ~ role): a family of keys
    assert all(any(k.startswith(p) for k in zh) for p in prefixes), prefixes
    assert used - prefixes <= set(zh), used - prefixes - set(zh)
    assert {f"role.{r.value}" for r in Role} <= set(zh)
