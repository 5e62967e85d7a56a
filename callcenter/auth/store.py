"""The SQL of users, sessions and the audit log."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from callcenter.auth.model import Principal, Role

_USER_COLUMNS = ("id, username, display_name, role, agent_id, language, disabled, created_at,"
                 " created_by, password_changed_at, last_login_at")


class UserExists(Exception):
    pass


class UnknownAgent(Exception):
    pass


@dataclass(frozen=True)
class SessionRow:
    user: Principal
    data: dict[str, Any]
    created_at: datetime
    last_seen_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_of(row: asyncpg.Record | dict[str, Any]) -> Principal:
    return Principal(user_id=row["id"], username=row["username"], role=Role(row["role"]),
                     agent_id=row["agent_id"], display_name=row["display_name"],
                     language=row["language"])


def _public(row: asyncpg.Record) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(row).items()}


async def create_user(pool: asyncpg.Pool, *, username: str, role: Role, password_hash: str,
                      created_by: str, display_name: str = "", agent_id: str | None = None,
                      language: str = "zh-CN") -> dict[str, Any]:
    try:
        row = await pool.fetchrow(
            "INSERT INTO users (username, display_name, role, agent_id, password_hash,"
            " language, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            f" RETURNING {_USER_COLUMNS}",
            username, display_name, role.value, agent_id, password_hash, language, created_by)
    except asyncpg.UniqueViolationError as exc:
        raise UserExists(username if "username" in str(exc) else f"agent {agent_id}") from exc
    except asyncpg.ForeignKeyViolationError as exc:
        raise UnknownAgent(agent_id) from exc
    assert row is not None
    return _public(row)


async def list_users(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
    return [_public(r) for r in rows]


async def get_user(pool: asyncpg.Pool, user_id: int) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return _public(row) if row else None


async def credentials(pool: asyncpg.Pool, username: str) -> asyncpg.Record | None:
    """The user row with its hash, for signing in (enabled users only)."""
    return await pool.fetchrow(
        f"SELECT {_USER_COLUMNS}, password_hash FROM users"
        " WHERE username = $1 AND NOT disabled", username)


async def update_user(pool: asyncpg.Pool, user_id: int, changes: dict[str, Any]
                      ) -> dict[str, Any] | None:
    """Change role, display name, agent link, language, disabled or the password hash
    (key ``password_hash``). Anything but the display name or language signs the user
    out everywhere."""
    allowed = ("display_name", "role", "agent_id", "language", "disabled", "password_hash")
    sets, args = [], []
    for key in allowed:
        if key in changes:
            args.append(changes[key])
            sets.append(f"{key} = ${len(args) + 1}")
    if "password_hash" in changes:
        sets.append("password_changed_at = now()")
    if not sets:
        return await get_user(pool, user_id)
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                f"UPDATE users SET {', '.join(sets)} WHERE id = $1 RETURNING {_USER_COLUMNS}",
                user_id, *args)
        except asyncpg.UniqueViolationError as exc:
            raise UserExists(f"agent {changes.get('agent_id')}") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise UnknownAgent(changes.get("agent_id")) from exc
        if row is not None and set(changes) - {"display_name", "language"}:
            await conn.execute("DELETE FROM web_sessions WHERE user_id = $1", user_id)
    return _public(row) if row else None


async def record_login(pool: asyncpg.Pool, user_id: int, new_hash: str | None = None) -> None:
    if new_hash:
        await pool.execute("UPDATE users SET last_login_at = now(), password_hash = $2"
                           " WHERE id = $1", user_id, new_hash)
    else:
        await pool.execute("UPDATE users SET last_login_at = now() WHERE id = $1", user_id)


# -- sessions ------------------------------------------------------------------------


async def create_session(pool: asyncpg.Pool, token: str, user_id: int, data: dict[str, Any],
                         *, lifetime_s: float, ip: str | None, user_agent: str | None) -> None:
    await pool.execute(
        "INSERT INTO web_sessions (token_hash, user_id, data, expires_at, ip, user_agent)"
        " VALUES ($1, $2, $3::jsonb, now() + make_interval(secs => $4), $5, $6)",
        token_hash(token), user_id, data, lifetime_s, ip, (user_agent or "")[:300])


async def load_session(pool: asyncpg.Pool, token: str, *, idle_s: float) -> SessionRow | None:
    """A live session of an enabled user: not past its end, not idle too long."""
    row = await pool.fetchrow(
        f"SELECT s.data, s.created_at, s.last_seen_at, {_prefixed('u')}"
        " FROM web_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = $1 AND s.expires_at > now() AND NOT u.disabled"
        " AND s.last_seen_at > now() - make_interval(secs => $2)", token_hash(token), idle_s)
    if row is None:
        return None
    data = row["data"]
    return SessionRow(user=principal_of(row), created_at=row["created_at"],
                      data=json.loads(data) if isinstance(data, str) else dict(data),
                      last_seen_at=row["last_seen_at"])


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _USER_COLUMNS.split(","))


async def touch_session(pool: asyncpg.Pool, token: str) -> None:
    await pool.execute("UPDATE web_sessions SET last_seen_at = now() WHERE token_hash = $1",
                       token_hash(token))


async def save_session_data(pool: asyncpg.Pool, token: str, data: dict[str, Any]) -> None:
    await pool.execute("UPDATE web_sessions SET data = $2::jsonb WHERE token_hash = $1",
                       token_hash(token), data)


async def delete_session(pool: asyncpg.Pool, token: str) -> None:
    await pool.execute("DELETE FROM web_sessions WHERE token_hash = $1", token_hash(token))


async def delete_expired_sessions(pool: asyncpg.Pool, *, idle_s: float) -> int:
    status = await pool.execute(
        "DELETE FROM web_sessions WHERE expires_at <= now()"
        " OR last_seen_at <= now() - make_interval(secs => $1)", idle_s)
    return int(status.split()[-1])


# -- audit ---------------------------------------------------------------------------


async def audit(pool: asyncpg.Pool | asyncpg.Connection, *, action: str,
                principal: Principal | None = None, username: str | None = None,
                target_kind: str | None = None, target_id: str | None = None,
                details: dict[str, Any] | None = None, ip: str | None = None,
                user_agent: str | None = None) -> None:
    await pool.execute(
        "INSERT INTO audit_log (user_id, username, role, action, target_kind, target_id,"
        " details, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
        principal.user_id if principal else None,
        principal.username if principal else username,
        principal.role.value if principal else None,
        action, target_kind, target_id, _plain_json(details or {}),
        ip, (user_agent or "")[:300])


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    """Only JSON's own types (times and the like as text): the pool's codec encodes it."""
    return dict(json.loads(json.dumps(value, ensure_ascii=False, default=str)))


async def audit_entries(pool: asyncpg.Pool, *, limit: int = 200, target_kind: str | None = None,
                        target_id: str | None = None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM audit_log WHERE ($1::text IS NULL OR target_kind = $1)"
        " AND ($2::text IS NULL OR target_id = $2) ORDER BY id DESC LIMIT $3",
        target_kind, target_id, limit)
    out = []
    for r in rows:
        entry = _public(r)
        if isinstance(entry.get("details"), str):
            entry["details"] = json.loads(entry["details"])
        out.append(entry)
    return out
