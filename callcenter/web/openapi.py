"""Request validation and the OpenAPI document, from the same pydantic models.

A handler declares what it takes and gives with ``@endpoint(...)``; it reads its
input with ``json_body`` / ``query_of`` (the same models), and ``document`` walks
the app's own route table (each route with its Access) and these declarations.
So the document cannot drift from what the server does: a route that exists is
in it, and a field that is validated is the field that is described.

Bad input is a 400 with ``details.fields``: one entry per failing field (where,
what is wrong, pydantic's error type); the input itself is never echoed back (it
may be huge, or personal data).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError
from pydantic.json_schema import models_json_schema

from callcenter.auth import sessions
from callcenter.auth.http import ACCESS, UNSAFE
from callcenter.errors import BadRequest

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

TITLE = "callcenter API"
VERSION = "1"
REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
MAX_FIELDS_REPORTED = 20
# Text: any characters but the control ones (line breaks and tabs aside); PostgreSQL
# cannot even store a NUL.
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


class Strict(BaseModel):
    """A request body: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every error of the API."""

    status: int
    error: str
    message: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    upload: bool = False  # multipart/form-data with one "file"
    download: bool = False  # the answer is the file itself


_ENDPOINTS: dict[Handler, Endpoint] = {}


def endpoint(summary: str, **declared: Any) -> Callable[[H], H]:
    """Declare a handler's input and output for the OpenAPI document."""

    def register(handler: H) -> H:
        _ENDPOINTS[handler] = Endpoint(summary, **declared)
        return handler

    return register


# ---- input ------------------------------------------------------------------------


async def json_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``: strict types, no unknown fields."""
    if request.content_type != "application/json":
        raise BadRequest("send JSON (Content-Type: application/json)", error="bad_content_type")
    raw = await request.read()
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise invalid(exc, root=issubclass(model, RootModel)) from None


def query_of(request: web.Request, model: type[M]) -> M:
    """The query string as ``model`` (text converted: "20" is 20, "true" is true)."""
    values: dict[str, str] = {}
    for name, value in request.query.items():
        if name in values:
            raise BadRequest(f"{name} given twice", error="invalid_input",
                             fields=[{"field": name[:50], "problem": "given twice"}])
        values[name] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid(exc, root=False) from None


def invalid(exc: ValidationError, *, root: bool) -> BadRequest:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return BadRequest("the body is not valid JSON", error="bad_json")
    fields = [{"field": _field_name(e["loc"], e["type"], root), "problem": e["msg"],
               "type": e["type"]} for e in errors[:MAX_FIELDS_REPORTED]]
    return BadRequest("invalid input: " + ", ".join(sorted({f["field"] for f in fields})),
                      error="invalid_input", fields=fields)


def _field_name(loc: tuple[int | str, ...], kind: str, root: bool) -> str:
    # A tagged union's errors start with the tag ("resolve", "notes"): the field is
    # what follows it.
    parts = list(loc[1:] if root and len(loc) > 1 else loc)
    if not parts:
        return "type" if kind.startswith("union_tag") else "body"
    return ".".join(str(p)[:50] for p in parts)


# ---- the document -----------------------------------------------------------------


def document(app: web.Application) -> dict[str, Any]:
    """OpenAPI 3.1 for every /api/ route of ``app``: the route table gives paths,
    methods and who may call them; the endpoints' models give the rest."""
    paths: dict[str, dict[str, Any]] = {}
    models: set[type[BaseModel]] = {ErrorBody}
    for route, access in app[ACCESS].items():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or not path.startswith("/api/"):
            continue
        declared = _ENDPOINTS.get(route.handler)
        if declared is not None:
            models |= {m for m in (declared.body, declared.query, declared.response) if m}
        roles = sorted(r.value for r in access.roles) if access.roles is not None else None
        paths.setdefault(path, {})[route.method.lower()] = _operation(
            route.method, path, route.handler.__name__, declared, roles)
    _, schemas = models_json_schema([(m, _mode(m)) for m in sorted(models, key=_name)],
                                    ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "Errors are ErrorBody; state-changing requests need the "
                                "session's X-CSRF-Token."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas.get("$defs", {}), "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": sessions.COOKIE},
            "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"}}},
    }


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _mode(model: type[BaseModel]) -> Any:
    return "serialization" if model is ErrorBody or model.__name__.endswith("Out") \
        else "validation"


def _operation(method: str, path: str, name: str, declared: Endpoint | None,
               roles: list[str] | None) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": name, "summary": declared.summary if declared else name,
                          "x-roles": roles if roles is not None else "public"}
    if roles is not None:
        op["security"] = [{"session": [], "csrf": []}] if method in UNSAFE else [{"session": []}]
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
              for p in _PATH_PARAM.findall(path)]
    if declared and declared.query:
        params += _query_parameters(declared.query)
    if params:
        op["parameters"] = params
    if declared and declared.body:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _ref(declared.body)}}}
    elif declared and declared.upload:
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}}}}}}
    op["responses"] = _responses(declared, roles is not None)
    return op


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()]


def _responses(declared: Endpoint | None, signed_in: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if declared and declared.response:
        ok["content"] = {"application/json": {"schema": _ref(declared.response)}}
    elif declared and declared.download:
        ok["content"] = {"application/octet-stream": {"schema": {"type": "string",
                                                                 "format": "binary"}}}
    out = {str(declared.status if declared else 200): ok}
    codes = {400, *(declared.errors if declared else ())} | ({401, 403} if signed_in else set())
    error = {"description": "Error", "content": {"application/json": {"schema": _ref(ErrorBody)}}}
    out.update({str(code): error for code in sorted(codes)})
    return out


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


async def openapi_json(request: web.Request) -> web.Response:
    """This document (for signed-in users: the API is theirs only)."""
    return web.json_response(document(request.app))
