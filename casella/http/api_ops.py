"""The admin API's operations: what each one does, and the table that names them all.

Lives here: one handler per operation (domains, users, aliases, sending limits and holds, the
outbound queue), each calling the same store contract and services the CLI calls, and
`OPERATIONS`, the one table from which casella.http.api routes and checks requests and writes
the OpenAPI document. A token limited to a domain sees and changes that domain only: every
handler checks the domain of what it touches (`Call.allow_domain`). Must never: run SQL,
return a password hash or a token, or hash a password on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from casella import metrics
from casella.auth.passwords import hash_password
from casella.config import parse_size
from casella.errors import AlreadyExists, InvalidName, UserError
from casella.http import api_schemas as s
from casella.http.api_table import ApiError, Call, Operation, Param, openapi_document
from casella.limits import sendlimit
from casella.mail.addresses import normalize_address, normalize_alias_source, normalize_domain
from casella.store.model import Account, Alias, Domain, QueueEntry
from casella.store.sending import LIMIT_KEYS

# --- small helpers ---------------------------------------------------------------------------


def _norm(fn: Any, value: str, field: str) -> str:
    try:
        return str(fn(value))
    except InvalidName as exc:
        raise ApiError(400, str(exc), field) from None


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[1]


async def _require_hosted(store: Any, domain: str, field: str) -> None:
    """404 naming `field` unless `domain` is hosted: a user or alias needs its domain first."""
    if await store.get_domain(domain) is None:
        raise ApiError(404, f"domain {domain} is not hosted here; add it first", field)


def _quota(value: int | str) -> int:
    try:
        quota = parse_size(value)
    except ValueError:
        raise ApiError(400, f"bad quota {value!r}: use bytes, or 512K, 50M, 1G", "quota") \
            from None
    if quota > s.BIGGEST:
        raise ApiError(400, "the quota is too large", "quota")
    return quota


def _domain_json(d: Domain) -> dict[str, Any]:
    return {"name": d.name, "created": d.created}


def _user_json(a: Account) -> dict[str, Any]:
    return {"address": a.address, "domain": a.domain, "created": a.created,
            "quota": a.quota_bytes, "used_bytes": a.used_bytes,
            "used_messages": a.used_messages, "sending_held": a.sending_held,
            "pop3_delete": a.pop3_delete, "pop3_expire_days": a.pop3_expire_days}


def _alias_json(a: Alias) -> dict[str, Any]:
    return {"source": a.source, "destinations": list(a.destinations)}


def _entry_json(e: QueueEntry) -> dict[str, Any]:
    return {"id": e.id, "sender": e.sender, "created": e.created, "size": e.size,
            "held": e.held,
            "recipients": [{"address": r.address, "state": r.state, "attempts": r.attempts,
                            "next_attempt": r.next_attempt, "last_reply": r.last_reply}
                           for r in e.recipients]}


async def _account(call: Call, field: str = "address") -> Account:
    address = _norm(normalize_address, call.params[field], field)
    call.allow_domain(_domain_of(address), field)
    acct = await call.app.store.get_account(address)
    if acct is None:
        raise ApiError(404, f"user {address} does not exist", field)
    return acct


def _list_domain(call: Call) -> str | None:
    """The `domain` query parameter of a list, checked against the token."""
    given = call.params.get("domain")
    if given is None:
        return call.only_domain
    domain = _norm(normalize_domain, given, "domain")
    call.allow_domain(domain, "domain")
    return domain


# --- domains ---------------------------------------------------------------------------------

async def list_domains(call: Call) -> tuple[int, Any]:
    domains = await call.app.store.list_domains()
    return 200, [_domain_json(d) for d in domains
                 if call.only_domain is None or d.name == call.only_domain]


async def create_domain(call: Call) -> tuple[int, Any]:
    assert call.body is not None
    name = _norm(normalize_domain, call.body["name"], "name")
    call.allow_domain(name, "name")
    try:
        return 201, _domain_json(await call.app.store.add_domain(name))
    except AlreadyExists as exc:
        raise ApiError(409, str(exc), "name") from None


async def get_domain(call: Call) -> tuple[int, Any]:
    name = _norm(normalize_domain, call.params["name"], "name")
    call.allow_domain(name, "name")
    store = call.app.store
    domain = await store.get_domain(name)
    if domain is None:
        raise ApiError(404, f"domain {name} does not exist", "name")
    return 200, {**_domain_json(domain), "accounts": len(await store.list_accounts(name)),
                 "aliases": len(await store.list_aliases(name))}


async def delete_domain(call: Call) -> tuple[int, Any]:
    name = _norm(normalize_domain, call.params["name"], "name")
    call.allow_domain(name, "name")
    if await call.app.store.get_domain(name) is None:
        raise ApiError(404, f"domain {name} does not exist", "name")
    try:
        await call.app.store.remove_domain(name, force=bool(call.params.get("force")))
    except UserError as exc:
        # Still has users or aliases, and force was not given.
        raise ApiError(409, f"{exc} (force=true removes them)", "name") from None
    return 204, None


# --- users -----------------------------------------------------------------------------------

async def list_users(call: Call) -> tuple[int, Any]:
    accounts = await call.app.store.list_accounts(_list_domain(call))
    return 200, [_user_json(a) for a in accounts]


async def create_user(call: Call) -> tuple[int, Any]:
    assert call.body is not None
    body = call.body
    address = _norm(normalize_address, body["address"], "address")
    call.allow_domain(_domain_of(address), "address")
    quota = _quota(body["quota"]) if "quota" in body else call.app.config.limits.default_quota
    store = call.app.store
    await _require_hosted(store, _domain_of(address), "address")
    if await store.get_account(address) is not None:
        raise ApiError(409, f"user {address} already exists", "address")
    hashed = await asyncio.to_thread(hash_password, body["password"])
    return 201, _user_json(await store.add_account(address, hashed, quota))


async def get_user(call: Call) -> tuple[int, Any]:
    acct = await _account(call)
    mailboxes = await call.app.store.list_mailboxes(acct.id)
    return 200, {**_user_json(acct), "mailboxes": [
        {"name": m.name, "messages": m.messages, "unseen": m.unseen, "size": m.size}
        for m in mailboxes if m.selectable]}


async def patch_user(call: Call) -> tuple[int, Any]:
    assert call.body is not None
    acct = await _account(call)
    store = call.app.store
    quota = _quota(call.body["quota"]) if "quota" in call.body else None
    if "password" in call.body:
        hashed = await asyncio.to_thread(hash_password, call.body["password"])
        await store.set_password(acct.address, hashed)
    if quota is not None:
        await store.set_quota(acct.address, quota)
    if "pop3_delete" in call.body or "pop3_expire_days" in call.body:
        # The store sets both at once; a field left out keeps its value.
        await store.set_pop3_policy(acct.address,
                                    call.body.get("pop3_delete", acct.pop3_delete),
                                    call.body.get("pop3_expire_days", acct.pop3_expire_days))
    updated = await store.get_account(acct.address)
    if updated is None:
        raise ApiError(404, f"user {acct.address} does not exist", "address")
    return 200, _user_json(updated)


async def delete_user(call: Call) -> tuple[int, Any]:
    acct = await _account(call)
    await call.app.store.remove_account(acct.address)
    return 204, None


# --- aliases ---------------------------------------------------------------------------------

async def list_aliases(call: Call) -> tuple[int, Any]:
    domain = _list_domain(call)
    if domain is not None and await call.app.store.get_domain(domain) is None:
        raise ApiError(404, f"domain {domain} does not exist", "domain")
    return 200, [_alias_json(a) for a in await call.app.store.list_aliases(domain)]


async def create_alias(call: Call) -> tuple[int, Any]:
    assert call.body is not None
    source = _norm(normalize_alias_source, call.body["source"], "source")
    call.allow_domain(_domain_of(source), "source")
    dests = [_norm(normalize_address, d, "destinations") for d in call.body["destinations"]]
    store = call.app.store
    await _require_hosted(store, _domain_of(source), "source")
    if await store.get_alias(source) is not None:
        raise ApiError(409, f"alias {source} already exists", "source")
    return 201, _alias_json(await store.add_alias(source, dests))


async def _alias(call: Call) -> Alias:
    source = _norm(normalize_alias_source, call.params["source"], "source")
    call.allow_domain(_domain_of(source), "source")
    alias = await call.app.store.get_alias(source)
    if alias is None:
        raise ApiError(404, f"alias {source} does not exist", "source")
    return alias


async def get_alias(call: Call) -> tuple[int, Any]:
    return 200, _alias_json(await _alias(call))


async def delete_alias(call: Call) -> tuple[int, Any]:
    alias = await _alias(call)
    await call.app.store.remove_alias(alias.source)
    return 204, None


# --- sending limits and holds ----------------------------------------------------------------

async def _target(call: Call) -> tuple[Account | None, Domain]:
    """The account (None for a domain) and the domain that `target` names."""
    target = call.params["target"]
    store = call.app.store
    if "@" in target:
        acct = await _account(call, "target")
        domain = await store.get_domain(acct.domain)
    else:
        name = _norm(normalize_domain, target, "target")
        call.allow_domain(name, "target")
        acct, domain = None, await store.get_domain(name)
    if domain is None:
        raise ApiError(404, f"{target} does not exist", "target")
    return acct, domain


async def _limits_json(call: Call, acct: Account | None, domain: Domain) -> dict[str, Any]:
    if acct is None:
        accounts = await call.app.store.list_accounts(domain.name)
        return {"target": domain.name, "kind": "domain",
                **{k: getattr(domain, k) for k in LIMIT_KEYS},
                "accounts": len(accounts),
                "accounts_held": sum(1 for a in accounts if a.sending_held)}
    limits = sendlimit.effective_limits(call.app.config.limits, acct, domain)
    usage = await sendlimit.account_usage(call.app.store, acct)
    return {"target": acct.address, "kind": "account",
            **{k: getattr(acct, k) for k in LIMIT_KEYS},
            "sending_held": acct.sending_held,
            "effective": {k: getattr(limits, k) for k in LIMIT_KEYS},
            "usage": {"sent": usage.submitted, "defers_failures": usage.defers_failures,
                      "attempts": usage.attempts}}


async def get_limits(call: Call) -> tuple[int, Any]:
    acct, domain = await _target(call)
    return 200, await _limits_json(call, acct, domain)


async def patch_limits(call: Call) -> tuple[int, Any]:
    assert call.body is not None
    acct, domain = await _target(call)
    store = call.app.store
    values = {k: call.body[k] for k in LIMIT_KEYS if k in call.body}
    if values:
        await store.set_send_limits(acct.address if acct else domain.name, values)
    held = call.body.get("sending_held")
    if held is not None:
        # A domain's hold is its accounts' holds: an account added later is not held.
        targets = [acct] if acct else await store.list_accounts(domain.name)
        for a in targets:
            await store.set_sending_held(a.address, held)
            if held and not a.sending_held:
                metrics.send_held("admin")
    fresh_acct = await store.get_account(acct.address) if acct else None
    fresh_domain = await store.get_domain(domain.name)
    if fresh_domain is None or (acct is not None and fresh_acct is None):
        raise ApiError(404, f"{call.params['target']} does not exist", "target")
    return 200, await _limits_json(call, fresh_acct, fresh_domain)


async def reset_usage(call: Call) -> tuple[int, Any]:
    acct, domain = await _target(call)
    accounts = [acct] if acct else await call.app.store.list_accounts(domain.name)
    n = await call.app.store.reset_send_usage([a.id for a in accounts])
    return 200, {"events_forgotten": n}


# --- the outbound queue ----------------------------------------------------------------------

def _visible(call: Call, entry: QueueEntry) -> bool:
    """A domain's token sees the mail its addresses sent (never bounces: they have no
    sender)."""
    only = call.only_domain
    return only is None or entry.sender.rpartition("@")[2].lower() == only


async def _entry(call: Call) -> QueueEntry:
    entry = await call.app.store.get_queue_entry(call.params["id"])
    if entry is None:
        raise ApiError(404, f"queue entry {call.params['id']} does not exist", "id")
    if not _visible(call, entry):
        raise ApiError(403, f"this token may only manage mail from {call.only_domain}", "id")
    return entry


async def list_queue(call: Call) -> tuple[int, Any]:
    return 200, [_entry_json(e) for e in await call.app.store.list_queue()
                 if _visible(call, e)]


async def get_queue_entry(call: Call) -> tuple[int, Any]:
    return 200, _entry_json(await _entry(call))


async def patch_queue_entry(call: Call) -> tuple[int, Any]:
    assert call.body is not None
    entry = await _entry(call)
    await call.app.store.queue_set_held(entry.id, call.body["held"])
    return 200, _entry_json(await _entry(call))


async def delete_queue_entry(call: Call) -> tuple[int, Any]:
    entry = await _entry(call)
    await call.app.store.queue_remove(entry.id)
    return 204, None


async def flush_queue_entry(call: Call) -> tuple[int, Any]:
    entry = await _entry(call)
    return 200, {"flushed": await call.app.store.queue_flush(entry.id, int(time.time()))}


async def flush_queue(call: Call) -> tuple[int, Any]:
    store = call.app.store
    now = int(time.time())
    if call.only_domain is None:
        return 200, {"flushed": await store.queue_flush(None, now)}
    flushed = 0
    for entry in await store.list_queue():
        if _visible(call, entry):
            flushed += await store.queue_flush(entry.id, now)
    return 200, {"flushed": flushed}


async def openapi(call: Call) -> tuple[int, Any]:
    return 200, DOCUMENT


# --- the table -------------------------------------------------------------------------------

_NAME = Param("name", "path", s.DOMAIN_NAME, "a hosted domain")
_ADDRESS = Param("address", "path", s.ADDRESS, "an account's address")
_SOURCE = Param("source", "path", s.ALIAS_SOURCE, "user@domain, or @domain (catch-all)")
_TARGET = Param("target", "path", {"type": "string", "minLength": 1, "maxLength": 320},
                "an account's address or a domain")
_QID = Param("id", "path", {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
             "a queue entry's id")
_DOMAIN_Q = Param("domain", "query", s.DOMAIN_NAME, "only this domain", required=False)
_FORCE = Param("force", "query", {"type": "boolean"},
               "also remove the domain's users (with their mail) and aliases", required=False)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/openapi.json", "getOpenApi", "This document", "meta", openapi,
              result={"type": "object"}, errors=(), auth=False),

    Operation("GET", "/domains", "listDomains", "Hosted domains (a domain's token: its own)",
              "domains", list_domains, result=s.array_of(s.DOMAIN), errors=()),
    Operation("POST", "/domains", "createDomain", "Host a new domain", "domains",
              create_domain, body=s.DOMAIN_CREATE, status=201, result=s.DOMAIN,
              errors=(400, 409)),
    Operation("GET", "/domains/{name}", "getDomain", "A domain with its numbers of accounts "
              "and aliases", "domains", get_domain, (_NAME,), result=s.DOMAIN_DETAIL),
    Operation("DELETE", "/domains/{name}", "deleteDomain", "Stop hosting a domain (refused "
              "while it has users or aliases, unless force=true)", "domains", delete_domain,
              (_NAME, _FORCE), status=204, errors=(400, 404, 409)),

    Operation("GET", "/users", "listUsers", "Accounts, of one domain or all", "users",
              list_users, (_DOMAIN_Q,), result=s.array_of(s.USER)),
    Operation("POST", "/users", "createUser", "Create an account (quota: bytes or 2G; default "
              "limits.default_quota)", "users", create_user, body=s.USER_CREATE, status=201,
              result=s.USER, errors=(400, 404, 409)),
    Operation("GET", "/users/{address}", "getUser", "An account with its quota use and "
              "folders", "users", get_user, (_ADDRESS,), result=s.USER_DETAIL),
    Operation("PATCH", "/users/{address}", "updateUser", "Change an account's password, "
              "quota or POP3 policy (null: the config's)", "users", patch_user, (_ADDRESS,),
              body=s.USER_PATCH, result=s.USER),
    Operation("DELETE", "/users/{address}", "deleteUser", "Remove an account with all its "
              "mail", "users", delete_user, (_ADDRESS,), status=204),

    Operation("GET", "/aliases", "listAliases", "Aliases and catch-alls, of one domain or all",
              "aliases", list_aliases, (_DOMAIN_Q,), result=s.array_of(s.ALIAS)),
    Operation("POST", "/aliases", "createAlias", "Create an alias or a catch-all (@domain)",
              "aliases", create_alias, body=s.ALIAS_CREATE, status=201, result=s.ALIAS,
              errors=(400, 404, 409)),
    Operation("GET", "/aliases/{source}", "getAlias", "One alias", "aliases", get_alias,
              (_SOURCE,), result=s.ALIAS),
    Operation("DELETE", "/aliases/{source}", "deleteAlias", "Remove an alias", "aliases",
              delete_alias, (_SOURCE,), status=204),

    Operation("GET", "/limits/{target}", "getLimits", "Sending limits and hold of an account "
              "(with the last hour's usage) or a domain", "limits", get_limits, (_TARGET,),
              result=s.LIMITS),
    Operation("PATCH", "/limits/{target}", "updateLimits", "Set sending limits (null: the "
              "default) or hold/release outgoing mail", "limits", patch_limits, (_TARGET,),
              body=s.LIMITS_PATCH, result=s.LIMITS),
    Operation("POST", "/limits/{target}/reset", "resetUsage", "Forget the last hour's sending "
              "(lifts a pause at once)", "limits", reset_usage, (_TARGET,), result=s.RESET),

    Operation("GET", "/queue", "listQueue", "Outbound mail waiting, with each recipient's "
              "state", "queue", list_queue, result=s.array_of(s.QUEUE_ENTRY), errors=()),
    Operation("POST", "/queue/flush", "flushQueue", "Try every waiting recipient now",
              "queue", flush_queue, result=s.FLUSHED, errors=()),
    Operation("GET", "/queue/{id}", "getQueueEntry", "One queue entry", "queue",
              get_queue_entry, (_QID,), result=s.QUEUE_ENTRY),
    Operation("PATCH", "/queue/{id}", "updateQueueEntry", "Hold or release a queue entry",
              "queue", patch_queue_entry, (_QID,), body=s.QUEUE_PATCH, result=s.QUEUE_ENTRY),
    Operation("DELETE", "/queue/{id}", "deleteQueueEntry", "Delete a queue entry without any "
              "notice", "queue", delete_queue_entry, (_QID,), status=204),
    Operation("POST", "/queue/{id}/flush", "flushQueueEntry", "Try this entry's waiting "
              "recipients now", "queue", flush_queue_entry, (_QID,), result=s.FLUSHED),
)

DOCUMENT = openapi_document(OPERATIONS)
