"""Secrets out of what is printed: DSN passwords in every form libpq and asyncpg
accept, credentials and queries out of URLs."""

from __future__ import annotations

import pytest

from callcenter.redact import dsn_passwords, mask_dsn, redact, safe_url, scrub_urls
from callcenter.settings import Settings, describe


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        # URL form
        ("postgresql://u:pw@db.example/calls", "postgresql://u:***@db.example/calls"),
        ("postgres://u:pw@db:5433/calls?sslmode=require",
         "postgres://u:***@db:5433/calls?sslmode=require"),
        ("POSTGRESQL://u:p%40ss%3Aw@db/x", "POSTGRESQL://u:***@db/x"),
        ("postgresql://u:p@ss:w/rd@db/x", "postgresql://u:***@db/x"),  # unescaped @ : /
        ("postgresql://u:pw@h1:5432,h2:5433/x?target_session_attrs=read-write",
         "postgresql://u:***@h1:5432,h2:5433/x?target_session_attrs=read-write"),
        # URL with the password in the query
        ("postgresql://u@db/x?password=pw", "postgresql://u@db/x?password=***"),
        ("postgresql:///x?host=/run/pg&user=u&password=pw&sslmode=disable",
         "postgresql:///x?host=/run/pg&user=u&password=***&sslmode=disable"),
        ("postgresql://u:pw@db/x?sslpassword=keypw", "postgresql://u:***@db/x?sslpassword=***"),
        # keyword/value form, bare and quoted values
        ("host=db password=pw dbname=calls", "host=db password=*** dbname=calls"),
        ("host=db password = pw user=u", "host=db password = *** user=u"),
        ("host=db password='p w\\'x' dbname=calls", "host=db password=*** dbname=calls"),
        ("password='unclosed secret", "password=***"),
        ("host=db user=u", "host=db user=u"),
        # nothing to hide
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("postgresql://db:5432/x", "postgresql://db:5432/x"),
        ("postgresql://u:@db/x", "postgresql://u:@db/x"),
    ],
)
def test_mask_dsn_hides_the_password_and_keeps_the_rest(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


@pytest.mark.parametrize(
    ("dsn", "secret"),
    [
        ("postgresql://u:Zx9%21q@db/x", "Zx9!q"),
        ("postgresql://u@db/x?password=Zx9q", "Zx9q"),
        ("host=db password='Zx 9q' dbname=y", "Zx 9q"),
    ],
)
def test_passwords_are_found_as_written_and_decoded(dsn: str, secret: str) -> None:
    found = dsn_passwords(dsn)
    assert secret in found
    assert secret not in redact(f"failed: {dsn} / {secret}", found)


def test_config_shows_the_database_url_masked_and_readable() -> None:
    for dsn, shown in [
        ("postgresql://cc:Zq-7pw@db:5432/calls", "postgresql://cc:***@db:5432/calls"),
        ("postgresql://cc@db/calls?password=Zq-7pw", "postgresql://cc@db/calls?password=***"),
        ("host=db user=cc password=Zq-7pw dbname=x", "host=db user=cc password=*** dbname=x"),
    ]:
        rows = {r["name"]: r["value"] for r in describe(Settings(database_url=dsn))}
        assert rows["database_url"] == shown
        assert "Zq-7pw" not in "".join(str(r) for r in describe(Settings(database_url=dsn)))


def test_urls_lose_credentials_and_query() -> None:
    url = "ws://cc:s3cret@127.0.0.1:8088/ari/events?app=hotline&api_key=cc:s3cret#x"
    assert safe_url(url) == "ws://127.0.0.1:8088/ari/events"
    text = scrub_urls(f"401, message='Invalid response status', url=URL('{url}')")
    assert "s3cret" not in text and "api_key" not in text
    assert "URL('ws://127.0.0.1:8088/ari/events" in text
