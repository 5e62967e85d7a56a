"""The web's gate, and the routes of signing in and of managing users.

``guard`` runs before every handler: the Host header must be one of ours (no
DNS rebinding), the path must hold no control characters, the route's declared
``Access`` must admit the signed-in user, and a state-changing request must come
from our own pages (same origin, and the session's CSRF token in the
``X-CSRF-Token`` header or a ``csrf_token`` form field). Routes are added with
``add_route`` only, each with its Access; a route without one is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute
from yarl import URL

from callcenter.auth import sessions, store
from callcenter.auth.model import (
    LANGUAGES,
    USERNAME,
    Access,
    Decision,
    Principal,
    Role,
    decide,
    password_problem,
)
from callcenter.auth.passwords import hash_password, needs_rehash, new_password, verify_password
from callcenter.auth.throttle import LoginThrottle
from callcenter.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from callcenter.keys import POOL, SETTINGS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACCESS = web.AppKey("access", dict[AbstractRoute, Access])
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
LOGIN_COOKIE = "cc_login"  # the sign-in form's own CSRF token (double submit)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def add_route(app: web.Application, method: str, path: str, handler: Handler,
              access: Access, *, name: str | None = None) -> None:
    route = app.router.add_route(method, path, handler, name=name)
    app.setdefault(ACCESS, {})[route] = access


def principal(request: web.Request) -> Principal:
    """The signed-in user of a route that requires one (the guard made sure)."""
    return request[sessions.PRINCIPAL_KEY]


def maybe_principal(request: web.Request) -> Principal | None:
    return request.get(sessions.PRINCIPAL_KEY)


def client_ip(request: web.Request) -> str:
    return request.remote or "?"


def is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def allowed_hosts(app: web.Application) -> frozenset[str]:
    settings = app[SETTINGS]
    if settings.web_allowed_hosts:
        return frozenset(settings.web_allowed_hosts)
    hosts = {"localhost", "127.0.0.1", "::1"}
    if settings.web_host not in ("0.0.0.0", "::", ""):
        hosts.add(settings.web_host.lower())
    return frozenset(hosts)


def _host_name(host: str) -> str | None:
    try:
        name = URL(f"http://{host}").host
    except ValueError:
        return None
    return name.lower().strip("[]") if name else None


def wants_html(request: web.Request) -> bool:
    return (request.method == "GET" and not request.path.startswith("/api/")
            and "text/html" in request.headers.get("Accept", ""))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _host_name(request.host) not in allowed_hosts(request.app):
        raise BadRequest("this server does not answer to that host name", error="bad_host")
    raw = request.raw_path
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in request.path) or "%00" in raw:
        raise BadRequest("control characters in the path", error="bad_path")
    route = request.match_info.route
    access = request.app.get(ACCESS, {}).get(route)
    if access is None:
        if request.match_info.http_exception is not None:
            raise request.match_info.http_exception  # 404/405 of the router
        raise NotFound("no such page")  # a route without an Access is never served
    user, csrf = (None, None)
    if not access.public and sessions.COOKIE in request.cookies:
        # Public routes (static files, health, signing in) need nobody's session:
        # no database round trip for them.
        user, csrf = await sessions.current(request)
    decision = decide(access, user, loopback=is_loopback(request))
    if decision is Decision.SIGN_IN:
        if wants_html(request):
            raise web.HTTPSeeOther(f"/login?{_next_query(request)}")
        raise Unauthorized("sign in first")
    if decision is Decision.FORBIDDEN:
        raise Forbidden("your role may not use this", role=user.role.value if user else None)
    if request.method in UNSAFE:
        _same_origin(request)
        if user is not None:
            await _check_csrf(request, csrf)
    return await handler(request)


def _next_query(request: web.Request) -> str:
    return str(URL.build(query={"next": request.rel_url.path_qs})).lstrip("?")


def _same_origin(request: web.Request) -> None:
    """Browsers say where a request comes from: refuse other sites outright."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise Forbidden("cross-site request refused", error="cross_site")
    origin = request.headers.get("Origin")
    if origin and origin != "null" and _host_name(URL(origin).raw_authority or "") is not None:
        if URL(origin).raw_authority != request.host:
            raise Forbidden("cross-origin request refused", error="cross_site")
    elif origin == "null":
        raise Forbidden("cross-origin request refused", error="cross_site")


async def _check_csrf(request: web.Request, expected: str | None) -> None:
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type in ("application/x-www-form-urlencoded",
                                                  "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else None
    if not expected or not given or not hmac.compare_digest(given, expected):
        raise Forbidden("missing or wrong CSRF token", error="csrf")


# -- signing in ----------------------------------------------------------------------


async def authenticate(request: web.Request, username: str, password: str) -> Principal:
    """Check a user name and password, throttled and audited; the signed-in user."""
    pool, ip = request.app[POOL], client_ip(request)
    username = username.strip().lower()[:64]
    throttle = request.app[THROTTLE]
    wait = await throttle.retry_after(username, ip)
    if wait is not None:
        await store.audit(pool, action="sign_in_throttled", username=username, ip=ip,
                          user_agent=request.headers.get("User-Agent"))
        raise TooManyAttempts(wait)
    row = await store.credentials(pool, username) if USERNAME.match(username) else None
    if not verify_password(row["password_hash"] if row else None, password):
        await throttle.failed(username, ip)
        await store.audit(pool, action="sign_in_failed", username=username, ip=ip,
                          user_agent=request.headers.get("User-Agent"))
        raise Unauthorized("wrong user name or password", error="bad_credentials")
    assert row is not None
    await throttle.succeeded(username, ip)
    who = store.principal_of(row)
    rehash = hash_password(password) if needs_rehash(row["password_hash"]) else None
    await store.record_login(pool, who.user_id, rehash)
    old = request.cookies.get(sessions.COOKIE)
    if old:
        await store.delete_session(pool, old)
    await store.audit(pool, action="sign_in", principal=who, ip=ip,
                      user_agent=request.headers.get("User-Agent"))
    return who


class TooManyAttempts(TooManyRequests):
    error_id = "too_many_attempts"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many failed sign-ins; try again later",
                         retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


def login_form_token(response: web.StreamResponse, request: web.Request) -> str:
    """The sign-in form's CSRF token: in a strict cookie and in the form."""
    token = secrets.token_urlsafe(24)
    response.set_cookie(LOGIN_COOKIE, token, max_age=1800, httponly=True, samesite="Strict",
                        secure=request.app[SETTINGS].web_cookie_secure, path="/login")
    return token


def check_login_form_token(request: web.Request, given: str | None) -> None:
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or not given or not hmac.compare_digest(expected, given):
        raise Forbidden("the sign-in form has expired; reload it", error="csrf")


async def api_session_create(request: web.Request) -> web.Response:
    """Sign in from a script or the console's JavaScript:
    ``{"username": ..., "password": ...}`` (JSON only: no form from another site)."""
    if request.content_type != "application/json":
        raise BadRequest("send JSON", error="bad_content_type")
    body = await _json_body(request)
    who = await authenticate(request, str(body.get("username", "")),
                             str(body.get("password", "")))
    csrf = await sessions.sign_in(request, who)
    return web.json_response({"user": _me(who), "csrf_token": csrf})


async def api_session_delete(request: web.Request) -> web.Response:
    await store.audit(request.app[POOL], action="sign_out", principal=principal(request),
                      ip=client_ip(request))
    await sessions.sign_out(request)
    return web.json_response({"signed_out": True})


async def api_me(request: web.Request) -> web.Response:
    _user, csrf = await sessions.current(request)
    return web.json_response({"user": _me(principal(request)), "csrf_token": csrf})


def _me(who: Principal) -> dict[str, Any]:
    return {"id": who.user_id, "username": who.username, "role": who.role.value,
            "agent_id": who.agent_id, "display_name": who.display_name,
            "language": who.language}


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("body must be JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


# -- users (admins) ------------------------------------------------------------------


async def api_users(request: web.Request) -> web.Response:
    return web.json_response(await store.list_users(request.app[POOL]))


async def api_user_create(request: web.Request) -> web.Response:
    """``{"username", "role", "display_name"?, "agent_id"?, "language"?, "password"?}``;
    without a password one is made and returned once."""
    body = await _json_body(request)
    fields = _user_fields(body, creating=True)
    username = fields.pop("username")
    password = body.get("password")
    generated = password is None
    password = new_password() if generated else str(password)
    problem = password_problem(password, username)
    if problem:
        raise BadRequest(f"password: {problem}", field="password")
    admin = principal(request)
    try:
        user = await store.create_user(
            request.app[POOL], username=username, password_hash=hash_password(password),
            created_by=admin.username, **fields)
    except store.UserExists as exc:
        raise Conflict(f"already taken: {exc}") from exc
    except store.UnknownAgent as exc:
        raise BadRequest(f"no agent {exc}", field="agent_id") from exc
    await _audit_change(request, "user_created", user["id"], {**fields, "username": username})
    body = {"user": user, **({"password": password} if generated else {})}
    return web.json_response(body, status=201)


async def api_user_update(request: web.Request) -> web.Response:
    """Change role, display name, agent link, language, disabled, or set a password
    (``"password": null`` makes a new one, returned once). Signs the user out
    everywhere unless only the name or language changed."""
    try:
        user_id = int(request.match_info["user_id"])
    except ValueError as exc:
        raise NotFound("no such user") from exc
    body = await _json_body(request)
    changes = _user_fields(body, creating=False)
    current_user = await store.get_user(request.app[POOL], user_id)
    if current_user is None:
        raise NotFound("no such user", user_id=user_id)
    generated = None
    if "password" in body:
        password = body["password"]
        if password is None:
            password = generated = new_password()
        problem = password_problem(str(password), current_user["username"])
        if problem:
            raise BadRequest(f"password: {problem}", field="password")
        changes["password_hash"] = hash_password(str(password))
    me = principal(request)
    if me.user_id == user_id and (changes.get("role", Role.ADMIN) != Role.ADMIN
                                  or changes.get("disabled")):
        raise Conflict("an admin cannot demote or disable themselves")
    try:
        user = await store.update_user(request.app[POOL], user_id, changes)
    except store.UserExists as exc:
        raise Conflict(f"already taken: {exc}") from exc
    except store.UnknownAgent as exc:
        raise BadRequest(f"no agent {exc}", field="agent_id") from exc
    shown = {k: v for k, v in changes.items() if k != "password_hash"}
    if "password_hash" in changes:
        shown["password"] = "changed"
    await _audit_change(request, "user_changed", user_id, shown)
    return web.json_response({"user": user, **({"password": generated} if generated else {})})


def _user_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if creating:
        username = str(body.get("username", "")).strip().lower()
        if not USERNAME.match(username):
            raise BadRequest("username: 2-64 of a-z 0-9 . _ -, starting with a letter or digit",
                             field="username")
        out["username"] = username
    if creating or "role" in body:
        try:
            out["role"] = Role(str(body.get("role")))
        except ValueError as exc:
            raise BadRequest(f"role must be one of {', '.join(Role)}", field="role") from exc
    if "display_name" in body:
        out["display_name"] = str(body["display_name"] or "")[:100]
    if "agent_id" in body:
        out["agent_id"] = None if body["agent_id"] in (None, "") else str(body["agent_id"])
    if "language" in body:
        if body["language"] not in LANGUAGES:
            raise BadRequest(f"language must be one of {', '.join(LANGUAGES)}",
                             field="language")
        out["language"] = body["language"]
    if "disabled" in body and not creating:
        if not isinstance(body["disabled"], bool):
            raise BadRequest("disabled must be true or false", field="disabled")
        out["disabled"] = body["disabled"]
    if out.get("role") == Role.AGENT and creating and not out.get("agent_id"):
        raise BadRequest("an agent user needs agent_id (see `callcenter agents add`)",
                         field="agent_id")
    return out


async def _audit_change(request: web.Request, action: str, user_id: int,
                        details: dict[str, Any]) -> None:
    await store.audit(request.app[POOL], action=action, principal=principal(request),
                      target_kind="user", target_id=str(user_id), details=details,
                      ip=client_ip(request), user_agent=request.headers.get("User-Agent"))


async def audit_request(request: web.Request, action: str, target_kind: str, target_id: str,
                        details: dict[str, Any] | None = None) -> None:
    """Write what the signed-in user of this request did to the audit log."""
    await store.audit(request.app[POOL], action=action, principal=maybe_principal(request),
                      target_kind=target_kind, target_id=target_id, details=details,
                      ip=client_ip(request), user_agent=request.headers.get("User-Agent"))


async def api_audit(request: web.Request) -> web.Response:
    try:
        limit = min(1000, max(1, int(request.query.get("limit", "200"))))
    except ValueError as exc:
        raise BadRequest("limit must be an integer") from exc
    entries = await store.audit_entries(
        request.app[POOL], limit=limit, target_kind=request.query.get("target_kind"),
        target_id=request.query.get("target_id"))
    return web.json_response(entries)
