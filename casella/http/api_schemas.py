"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of the admin API's requests and answers.

Lives here: plain dicts, one per resource and request body, that casella.http.api_ops names in
its table of operations; casella.http.api validates requests against them and writes them into
the OpenAPI document, so the document and the checks cannot drift apart. Must never: import
anything of casella, or hold behaviour.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

BIGGEST = 2**62            # counts and sizes: far above any real one, within SQLite's integers


def _object(properties: dict[str, Schema], required: tuple[str, ...] = (),
            **extra: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False, **extra}


def _int(minimum: int = 0, maximum: int = BIGGEST) -> Schema:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _nullable_int(maximum: int) -> Schema:
    return {"type": ["integer", "null"], "minimum": 0, "maximum": maximum}


TIME = {**_int(), "description": "seconds since 1970-01-01 UTC"}
DOMAIN_NAME = {"type": "string", "minLength": 1, "maxLength": 253,
               "examples": ["example.com"]}
ADDRESS = {"type": "string", "minLength": 3, "maxLength": 320,
           "examples": ["alice@example.com"]}
ALIAS_SOURCE = {"type": "string", "minLength": 2, "maxLength": 320,
                "description": "user@domain, or @domain for a catch-all",
                "examples": ["info@example.com", "@example.com"]}
PASSWORD = {"type": "string", "minLength": 1, "maxLength": 1024,
            "pattern": "^[^\\x00-\\x1f\\x7f]+$",
            "description": "stored as an argon2id hash; no control characters"}
QUOTA_IN = {"oneOf": [_int(), {"type": "string", "pattern": "^[0-9]{1,12}[KMGT]?$"}],
            "description": "bytes, or a size such as 512M or 2G; 0 = unlimited",
            "examples": ["2G"]}

LIMIT_FIELDS: dict[str, Schema] = {
    "messages_per_hour": {**_nullable_int(10**9),
                          "description": "recipients per rolling hour; 0 = unlimited; "
                                         "null = the default"},
    "defers_failures_per_hour": {**_nullable_int(10**9),
                                 "description": "deferred or failed deliveries per hour "
                                                "before sending pauses; null = the default"},
    "defers_failures_percent": {**_nullable_int(100),
                                "description": "and at least this share of the attempts; "
                                               "null = the default"},
}

ERROR = _object({"error": {"type": "string"},
                 "field": {"type": ["string", "null"],
                           "description": "the request field at fault, when there is one"}},
                ("error", "field"))

DOMAIN = _object({"name": DOMAIN_NAME, "created": TIME}, ("name", "created"))
DOMAIN_DETAIL = _object({"name": DOMAIN_NAME, "created": TIME, "accounts": _int(),
                         "aliases": _int()}, ("name", "created", "accounts", "aliases"))
DOMAIN_CREATE = _object({"name": DOMAIN_NAME}, ("name",))

MAILBOX = _object({"name": {"type": "string"}, "messages": _int(), "unseen": _int(),
                   "size": _int()}, ("name", "messages", "unseen", "size"))
# Mirrors casella.store.model.POP3_DELETE_POLICIES and POP3_MAX_EXPIRE_DAYS (this module
# imports nothing of casella; tests/http/test_api.py checks that they agree).
POP3_DELETE = {"enum": ["expunge", "move-to-trash", "hide", None],
               "description": "what POP3 DELE does for this account; null = [pop3] delete"}
POP3_EXPIRE = {**_nullable_int(36500),
               "description": "days after the first POP3 download that mail is removed (or "
                              "hidden); 0 = never; null = [pop3] expire_days"}

USER = _object({
    "address": ADDRESS, "domain": DOMAIN_NAME, "created": TIME,
    "quota": {**_int(), "description": "bytes; 0 = unlimited"},
    "used_bytes": _int(), "used_messages": _int(), "sending_held": {"type": "boolean"},
    "pop3_delete": POP3_DELETE, "pop3_expire_days": POP3_EXPIRE,
}, ("address", "domain", "created", "quota", "used_bytes", "used_messages", "sending_held",
    "pop3_delete", "pop3_expire_days"))
USER_DETAIL = {**USER, "properties": {**USER["properties"],
                                      "mailboxes": {"type": "array", "items": MAILBOX}},
               "required": [*USER["required"], "mailboxes"]}
USER_CREATE = _object({"address": ADDRESS, "password": PASSWORD, "quota": QUOTA_IN},
                      ("address", "password"))
USER_PATCH = _object({"password": PASSWORD, "quota": QUOTA_IN, "pop3_delete": POP3_DELETE,
                      "pop3_expire_days": POP3_EXPIRE}, minProperties=1)

ALIAS = _object({"source": ALIAS_SOURCE,
                 "destinations": {"type": "array", "items": ADDRESS, "minItems": 1}},
                ("source", "destinations"))
ALIAS_CREATE = _object({"source": ALIAS_SOURCE,
                        "destinations": {"type": "array", "items": ADDRESS, "minItems": 1,
                                         "maxItems": 100}},
                       ("source", "destinations"))

USAGE = _object({"sent": _int(), "defers_failures": _int(), "attempts": _int()},
                ("sent", "defers_failures", "attempts"),
                description="the last hour")
EFFECTIVE = _object({k: _int(maximum=10**9) for k in LIMIT_FIELDS}, tuple(LIMIT_FIELDS),
                    description="the limits that apply (account over domain over config)")
LIMITS = _object({
    "target": {"type": "string"},
    "kind": {"enum": ["account", "domain"]},
    **LIMIT_FIELDS,
    "sending_held": {"type": "boolean", "description": "account: its outgoing mail is held"},
    "accounts": {**_int(), "description": "domain: its accounts"},
    "accounts_held": {**_int(), "description": "domain: its accounts whose mail is held"},
    "effective": EFFECTIVE,
    "usage": USAGE,
}, ("target", "kind", *LIMIT_FIELDS))
LIMITS_PATCH = _object({
    **LIMIT_FIELDS,
    "sending_held": {"type": "boolean",
                     "description": "hold (true) or release (false) the outgoing mail of the "
                                    "account, or of every account of the domain"},
}, minProperties=1)
RESET = _object({"events_forgotten": _int()}, ("events_forgotten",))

RECIPIENT = _object({"address": {"type": "string"}, "state": {"type": "string"},
                     "attempts": _int(), "next_attempt": TIME,
                     "last_reply": {"type": "string"}},
                    ("address", "state", "attempts", "next_attempt", "last_reply"))
QUEUE_ENTRY = _object({"id": _int(1), "sender": {"type": "string"}, "created": TIME,
                       "size": _int(), "held": {"type": "boolean"},
                       "recipients": {"type": "array", "items": RECIPIENT}},
                      ("id", "sender", "created", "size", "held", "recipients"))
QUEUE_PATCH = _object({"held": {"type": "boolean"}}, ("held",))
FLUSHED = _object({"flushed": _int()}, ("flushed",))


def array_of(item: Schema) -> Schema:
    return {"type": "array", "items": item}
