"""Machine-readable errors: every failure the API or CLI reports has a status,
a stable error id and details."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 500
    error_id = "internal_error"

    def __init__(self, message: str, *, error: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if error is not None:  # a more precise id than the class's
            self.error_id = error

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status, "error": self.error_id, "message": self.message,
            "details": self.details,
        }


class NotFound(ServiceError):
    status = 404
    error_id = "not_found"


class BadRequest(ServiceError):
    status = 400
    error_id = "bad_request"


class Unauthorized(ServiceError):
    status = 401
    error_id = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    error_id = "forbidden"


class Conflict(ServiceError):
    status = 409
    error_id = "conflict"


class Unprocessable(ServiceError):
    """Well-formed, but the rules of the thing refuse it (a ticket's lifecycle)."""

    status = 422
    error_id = "unprocessable"


class TooManyRequests(ServiceError):
    status = 429
    error_id = "too_many_requests"


class Unavailable(ServiceError):
    status = 503
    error_id = "unavailable"


class CliError(Exception):
    """A one-line reason for the command line; the command exits with status 2."""
