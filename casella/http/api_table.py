"""The shape of the admin API's table of operations, and the OpenAPI document made from it.

Lives here: `Operation` (method, path, parameters, request and answer schemas, the error
statuses it may answer, its handler), `Param`, `Call` (what a handler receives: the App, the
caller's token, the checked parameters and body), `ApiError`, and `openapi_document`, which
writes the OpenAPI 3.1 document from the same table that casella.http.api routes and checks
requests with. Must never: hold an operation's behaviour (casella.http.api_ops) or aiohttp
glue (casella.http.api).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from casella.app import App
from casella.http.api_schemas import ERROR, Schema
from casella.store.model import ApiToken

API_VERSION = "1"

_REASONS = {
    400: "Bad request: malformed JSON, or a parameter or field is not valid (`field` names it)",
    401: "No token, or a token that is not valid or was revoked",
    403: "The token is limited to another domain, or the client is outside "
         "[http] admin_from",
    404: "No such resource",
    409: "It exists already, or it is still in use",
    413: "The request body is larger than [http] max_body_size",
}


class ApiError(Exception):
    """An answer other than success: HTTP status, a sentence, and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Param:
    name: str
    where: str                       # "path" or "query"
    schema: Schema
    description: str = ""
    required: bool = True


@dataclass
class Call:
    app: App
    token: ApiToken | None           # None only for operations without auth
    params: dict[str, Any]
    body: dict[str, Any] | None

    def allow_domain(self, domain: str, field: str | None = None) -> None:
        """403 unless the token may touch `domain` (a normalized domain name)."""
        if self.token is not None and self.token.domain is not None and \
                domain != self.token.domain:
            raise ApiError(403, f"this token may only manage {self.token.domain}", field)

    @property
    def only_domain(self) -> str | None:
        return self.token.domain if self.token is not None else None


Handler = Callable[[Call], Awaitable[tuple[int, Any]]]


@dataclass(frozen=True)
class Operation:
    method: str                      # GET, POST, PATCH, DELETE
    path: str                        # below /api/v1, with {name} for path parameters
    op_id: str
    summary: str
    tag: str
    handler: Handler
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    status: int = 200                # of a success
    result: Schema | None = None     # None: no body (204)
    errors: tuple[int, ...] = field(default=(400, 404))
    auth: bool = True

    def all_errors(self) -> Sequence[int]:
        """Every error status the operation may answer."""
        out = set(self.errors)
        if self.auth:
            out |= {401, 403}
        else:
            out.add(403)             # admin_from applies to the whole API
        if self.body is not None:
            out |= {400, 413}
        if self.params:
            out.add(400)
        return sorted(out)


def _parameter(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.where, "required": p.required,
                           "schema": p.schema}
    if p.description:
        out["description"] = p.description
    return out


def openapi_document(operations: Sequence[Operation], base: str = "/api/v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item: dict[str, Any] = {
            "operationId": op.op_id, "summary": op.summary, "tags": [op.tag],
            "responses": {},
        }
        if op.params:
            item["parameters"] = [_parameter(p) for p in op.params]
        if op.body is not None:
            item["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": op.body}}}
        ok: dict[str, Any] = {"description": "Done"}
        if op.result is not None:
            ok["content"] = {"application/json": {"schema": op.result}}
        item["responses"][str(op.status)] = ok
        for status in op.all_errors():
            item["responses"][str(status)] = {"$ref": f"#/components/responses/E{status}"}
        if not op.auth:
            item["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "casella admin API", "version": API_VERSION,
                 "description": "Domains, users, aliases, sending limits and holds, and the "
                                "outbound queue of a casella mail server. Authenticate with "
                                "`Authorization: Bearer <token>` (`casella token create`)."},
        "servers": [{"url": base}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
            "responses": {f"E{status}": {
                "description": text,
                "content": {"application/json": {"schema": {"$ref":
                                                            "#/components/schemas/Error"}}}}
                for status, text in _REASONS.items()},
        },
    }
