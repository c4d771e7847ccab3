"""The admin API under /api/v1: an aiohttp application for the HTTP listener to mount.

Lives here: `create_api(app)`, which routes every operation of casella.http.api_ops.OPERATIONS
and wraps each in the same steps, in this order: the client's address against `[http]
admin_from` (403), the bearer token (401; casella.auth.tokens), the path and query parameters
(400 naming the parameter), the body (413 over `[http] max_body_size`; 400 for JSON that is
malformed or breaks the operation's schema, naming the field), then the handler; and the one
mapping of errors to JSON answers `{"error": "...", "field": ...}`. The schemas checked here
are those the OpenAPI document at /api/v1/openapi.json shows. Must never: log or echo a token
or a password, or read more than max_body_size bytes of a body.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from casella.app import App
from casella.auth import tokens
from casella.errors import AlreadyExists, NotFound, StorageError, UserError
from casella.http.access import admin_allowed
from casella.http.api_ops import OPERATIONS
from casella.http.api_table import ApiError, Call, Operation, Param
from casella.store.model import ApiToken

log = logging.getLogger("casella.http.api")

_INT_RE = re.compile(r"^-?[0-9]{1,20}$")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _answer(status: int, message: str, field: str | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status,
                             headers=headers)


# --- the steps -------------------------------------------------------------------------------

async def _authenticate(app: App, request: web.Request) -> ApiToken:
    """RFC 6750 §2.1: `Authorization: Bearer <token>`."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "a bearer token is required (Authorization: Bearer <token>)")
    record = await tokens.verify(app.store, value.strip())
    if record is None:
        raise ApiError(401, "the token is not valid (revoked, or mistyped)")
    return record


def _coerce(p: Param, raw: str) -> Any:
    kind = p.schema.get("type")
    if kind == "integer":
        if not _INT_RE.match(raw):
            raise ApiError(400, f"{p.name} must be a whole number", p.name)
        return int(raw)
    if kind == "boolean":
        if raw.lower() not in _BOOLS:
            raise ApiError(400, f"{p.name} must be true or false", p.name)
        return _BOOLS[raw.lower()]
    return raw


def _params(op: Operation, request: web.Request,
            validators: dict[str, Draft202012Validator]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in op.params:
        raw = request.match_info.get(p.name) if p.where == "path" else \
            request.query.get(p.name)
        if raw is None:
            if p.required:
                raise ApiError(400, f"the parameter {p.name} is required", p.name)
            continue
        value = _coerce(p, raw)
        error = best_match(validators[p.name].iter_errors(value))
        if error is not None:
            raise ApiError(400, f"{p.name}: {_short(error.message)}", p.name)
        out[p.name] = value
    return out


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, refused (413) when it exceeds `limit`. aiohttp reads it at most once
    (the HTTP listener's guard may have already) and stops at the application's
    client_max_size, which casella.http.server sets to the same limit."""
    too_big = ApiError(413, f"the request body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_big
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_big from None
    if len(data) > limit:
        raise too_big
    return data


def _integral(value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer; the store gets 5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _short(text: str, most: int = 200) -> str:
    return text if len(text) <= most else text[:most] + "…"


def _field_of(error: ValidationError) -> str | None:
    """The top-level field a schema error is about."""
    if error.absolute_path:
        return str(error.absolute_path[0])
    instance = error.instance if isinstance(error.instance, dict) else {}
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in instance]
        return str(missing[0]) if missing else None
    if error.validator == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in known)
        return str(extra[0]) if extra else None
    return None


def _check_body(data: bytes, validator: Draft202012Validator) -> dict[str, Any]:
    if not data.strip():
        raise ApiError(400, "the request needs a JSON object as its body")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:   # JSONDecodeError, UnicodeDecodeError
        raise ApiError(400, f"the body is not valid JSON: {_short(str(exc), 120)}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    error = best_match(validator.iter_errors(body))
    if error is not None:
        field = _field_of(error)
        if error.validator == "required" and field:
            message = f"{field} is required"
        elif error.validator == "additionalProperties" and field:
            message = f"{field} is not a field of this request"
        elif error.validator == "minProperties":
            message = "give at least one field to change"
        else:
            message = f"{field + ': ' if field else ''}{_short(error.message)}"
        raise ApiError(400, message, field)
    return dict(_integral(body))


# --- the application -------------------------------------------------------------------------

def _handler(app: App, op: Operation) -> Any:
    body_validator = Draft202012Validator(op.body) if op.body is not None else None
    param_validators = {p.name: Draft202012Validator(p.schema) for p in op.params}
    limit = app.config.http.max_body_size

    async def handle(request: web.Request) -> web.StreamResponse:
        token: ApiToken | None = None
        try:
            if op.auth:
                token = await _authenticate(app, request)
            params = _params(op, request, param_validators)
            body = None
            if body_validator is not None:
                body = _check_body(await _read_body(request, limit), body_validator)
            status, result = await op.handler(Call(app, token, params, body))
            response: web.StreamResponse = (
                web.Response(status=204) if result is None
                else web.json_response(result, status=status))
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="casella"'} \
                if exc.status == 401 else None
            response = _answer(exc.status, exc.message, exc.field, headers)
        except NotFound as exc:
            response = _answer(404, str(exc))
        except AlreadyExists as exc:
            response = _answer(409, str(exc))
        except UserError as exc:
            response = _answer(400, str(exc))
        except StorageError as exc:
            log.error("%s %s: %s", op.method, op.path, exc)
            response = _answer(503, "the mail store is unavailable; try again later")
        except Exception:
            log.exception("%s %s failed", op.method, op.path)
            response = _answer(500, "internal error; the server's log says more")
        log.info("%s %s -> %d", request.method, request.rel_url.path, response.status,
                 extra={"proto": "api", "remote": request.remote or "-",
                        "user": token.name if token else "-"})
        return response

    return handle


def create_api(app: App) -> web.Application:
    """The admin API, to be mounted at /api/v1 (`main.add_subapp("/api/v1", create_api(app))`).
    Its paths are those of the OpenAPI document it serves at /api/v1/openapi.json."""

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if not admin_allowed(app.config, request.remote):
            return _answer(403, "this address may not use the admin API ([http] admin_from)")
        try:
            result: web.StreamResponse = await handler(request)
            return result
        except web.HTTPMethodNotAllowed as exc:
            return _answer(405, f"{request.method} is not allowed here",
                           headers={"Allow": ", ".join(sorted(exc.allowed_methods))})
        except web.HTTPException as exc:     # the router's 404, mostly
            return _answer(exc.status, exc.reason)

    api = web.Application(middlewares=[guard])
    for op in OPERATIONS:
        api.router.add_route(op.method, op.path, _handler(app, op))
    return api
