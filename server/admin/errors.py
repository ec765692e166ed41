"""The admin API's errors: each is an RFC 9457 problem, raised by a resource and turned
into ``application/problem+json`` only at the edge (``web/admin_api.py``)."""

from __future__ import annotations

from http import HTTPStatus


def problem_document(status: int, detail: str, type_: str = "about:blank") -> dict[str, object]:
    """RFC 9457's members: with ``about:blank`` the title is the status's own phrase."""
    return {"type": type_, "title": HTTPStatus(status).phrase, "status": status, "detail": detail}


class Problem(Exception):
    """An RFC 9457 problem: ``type`` is ``about:blank`` (the status says it all) unless a
    subclass names a type of ours, documented in docs/admin.md."""

    status = 400
    type = "about:blank"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}

    def document(self) -> dict[str, object]:
        return problem_document(self.status, self.detail, self.type)


class BadRequest(Problem):
    status = 400


class Unauthorized(Problem):
    """No token, or one that is not ours, expired, revoked, or of a disabled client or user
    (RFC 6750 §3.1: a request without a token gets a challenge with no error code)."""

    status = 401

    def __init__(
        self, detail: str, *, error: str | None = "invalid_token", scheme: str = "Bearer", nonce: str | None = None
    ) -> None:
        challenge = f'{scheme} realm="ostiary-admin"' + (f', error="{error}"' if error else "")
        headers = {"WWW-Authenticate": challenge}
        if nonce is not None:
            headers["DPoP-Nonce"] = nonce  # RFC 9449 §9
        super().__init__(detail, headers=headers)


class Forbidden(Problem):
    """A valid token that may not do this: RFC 6750 ``insufficient_scope`` naming the scope
    it lacks, or RFC 9470 ``insufficient_user_authentication`` for a user's token issued
    without a second factor."""

    status = 403

    def __init__(self, detail: str, *, error: str = "insufficient_scope", scope: str | None = None) -> None:
        challenge = f'Bearer realm="ostiary-admin", error="{error}"'
        if scope:
            challenge += f', scope="{scope}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class StepUpRequired(Forbidden):
    """RFC 9470 §3: the challenge names the ``acr_values`` (and ``max_age``) to sign in with."""

    def __init__(self, detail: str, acr: str, *, max_age: int | None = None) -> None:
        super().__init__(detail, error="insufficient_user_authentication")
        self.headers["WWW-Authenticate"] += f', acr_values="{acr}"'
        if max_age is not None:
            self.headers["WWW-Authenticate"] += f', max_age="{max_age}"'


class NotFound(Problem):
    status = 404


class MethodNotAllowed(Problem):
    status = 405


class Conflict(Problem):
    status = 409


class PreconditionFailed(Problem):
    """``If-Match`` named another version than the current one: someone changed the
    resource since it was read (a lost update avoided)."""

    status = 412
    type = "urn:ostiary:problem:precondition-failed"


class TooLarge(Problem):
    status = 413


class UnsupportedMediaType(Problem):
    status = 415


class TooManyRequests(Problem):
    status = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class Invalid(Problem):
    """The body or the query breaks the rules: ``errors`` lists each field at fault, named
    as the request named it (``redirect_uris``, ``limit``...)."""

    status = 422
    type = "urn:ostiary:problem:validation"

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        fields = ", ".join(field for field, _ in errors)
        super().__init__(f"invalid: {fields}" if fields else "invalid request")
        self.errors = errors

    def document(self) -> dict[str, object]:
        return {**super().document(), "errors": [{"field": f, "detail": d} for f, d in self.errors]}


def invalid(field: str, detail: str) -> Invalid:
    return Invalid([(field, detail)])
