"""The admin API over a real socket with httpx: every operation, every error status (400 with
the field named, 401, 403, 404, 405, 409, 413), a domain's token kept to its domain, and every
success answer checked against the schema the OpenAPI document gives for it."""

from __future__ import annotations

import imaplib
import socket
from typing import Any

import httpx
import jsonschema
import pytest

from casella.http.api_ops import DOCUMENT, OPERATIONS
from casella.store.model import QueueRecipient
from tests.http.conftest import AdminSite

_BY_ID = {op.op_id: op for op in OPERATIONS}


def conforms(op_id: str, response: httpx.Response, status: int | None = None) -> Any:
    """The response has the operation's success status and a body matching its schema."""
    op = _BY_ID[op_id]
    assert response.status_code == (status or op.status), response.text
    if op.result is None:
        assert response.content == b""
        return None
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    jsonschema.Draft202012Validator(op.result).validate(body)
    return body


def error(response: httpx.Response, status: int, field: str | None = None) -> str:
    """A JSON error with this status, naming `field`; returns its message."""
    assert response.status_code == status, response.text
    body = response.json()
    jsonschema.Draft202012Validator(DOCUMENT["components"]["schemas"]["Error"]).validate(body)
    assert body["field"] == field, body
    assert body["error"]
    return str(body["error"])


def enqueue(admin: AdminSite, sender: str, recipients: list[str]) -> int:
    async def go() -> int:
        store = admin.store
        acct = await store.get_account(sender) if sender else None
        blob = await store.blobs.stage(f"From: <{sender}>\r\nSubject: q\r\n\r\nhi\r\n".encode())
        try:
            return await store.enqueue(blob, sender, [QueueRecipient(r) for r in recipients],
                                       acct.id if acct else None)
        finally:
            blob.discard()
    return admin.server.run(go())


@pytest.fixture
def api(admin: AdminSite) -> httpx.Client:
    with admin.client(admin.token()) as client:
        yield client


# --- tokens ----------------------------------------------------------------------------------

def test_requests_without_a_valid_token_get_401(admin: AdminSite) -> None:
    """RFC 6750 §3: 401 with WWW-Authenticate: Bearer, for no token, another scheme, a
    malformed token, a wrong secret and a revoked token."""
    token = admin.token("panel")
    token_id = token.split("_")[1]
    wrong_secret = f"casella_{token_id}_{'A' * 43}"
    for headers in ({}, {"Authorization": f"Basic {token}"}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer nonsense"},
                    {"Authorization": f"Bearer {wrong_secret}"}):
        r = httpx.get(admin.url("/api/v1/domains"), headers=headers)
        error(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
    with admin.client(token) as c:
        conforms("listDomains", c.get("/domains"))
    admin.server.run(admin.store.remove_api_token("panel"))
    with admin.client(token) as c:
        error(c.get("/domains"), 401)
    # The document itself needs no token.
    assert httpx.get(admin.url("/api/v1/openapi.json")).json() == DOCUMENT


# --- domains ---------------------------------------------------------------------------------

def test_domains(api: httpx.Client) -> None:
    assert conforms("listDomains", api.get("/domains")) == []
    created = conforms("createDomain", api.post("/domains", json={"name": "Example.TEST"}))
    assert created["name"] == "example.test"
    assert "already exists" in error(api.post("/domains", json={"name": "example.test"}), 409,
                                     "name")
    error(api.post("/domains", json={"name": "no dot"}), 400, "name")
    error(api.post("/domains", json={"name": 7}), 400, "name")
    error(api.post("/domains", json={}), 400, "name")
    assert [d["name"] for d in conforms("listDomains", api.get("/domains"))] == ["example.test"]
    detail = conforms("getDomain", api.get("/domains/example.test"))
    assert (detail["accounts"], detail["aliases"]) == (0, 0)
    error(api.get("/domains/other.test"), 404, "name")
    error(api.get("/domains/bad..name"), 400, "name")

    conforms("createUser", api.post("/users", json={"address": "a@example.test",
                                                    "password": "pw"}))
    assert conforms("getDomain", api.get("/domains/example.test"))["accounts"] == 1
    assert "force" in error(api.delete("/domains/example.test"), 409, "name")
    error(api.delete("/domains/example.test", params={"force": "maybe"}), 400, "force")
    conforms("deleteDomain", api.delete("/domains/example.test", params={"force": "true"}))
    error(api.get("/domains/example.test"), 404, "name")
    error(api.delete("/domains/example.test"), 404, "name")


# --- users -----------------------------------------------------------------------------------

def test_users(admin: AdminSite, api: httpx.Client) -> None:
    conforms("createDomain", api.post("/domains", json={"name": "example.test"}))
    user = conforms("createUser", api.post("/users", json={
        "address": "Alice@Example.test", "password": "first pw", "quota": "2G"}))
    assert (user["address"], user["quota"], user["sending_held"]) == \
        ("alice@example.test", 2 * 1024**3, False)
    user2 = conforms("createUser", api.post("/users", json={
        "address": "bob@example.test", "password": "pw", "quota": 1000}))
    assert user2["quota"] == 1000
    default = conforms("createUser", api.post("/users", json={
        "address": "carol@example.test", "password": "pw"}))
    assert default["quota"] == admin.server.config.limits.default_quota
    error(api.post("/users", json={"address": "alice@example.test", "password": "x"}), 409,
          "address")
    error(api.post("/users", json={"address": "x@nowhere.test", "password": "x"}), 404,
          "address")
    error(api.post("/users", json={"address": "no-at-sign", "password": "x"}), 400,
          "address")
    error(api.post("/users", json={"address": "d@example.test", "password": "x",
                                   "quota": "lots"}), 400, "quota")
    error(api.post("/users", json={"address": "d@example.test", "password": "x",
                                   "quota": -1}), 400, "quota")
    error(api.post("/users", json={"address": "d@example.test", "password": "a\nb"}), 400,
          "password")
    error(api.post("/users", json={"address": "d@example.test"}), 400, "password")
    error(api.post("/users", json={"address": "d@example.test", "password": "x",
                                   "admin": True}), 400, "admin")

    listed = conforms("listUsers", api.get("/users"))
    assert [u["address"] for u in listed] == ["alice@example.test", "bob@example.test",
                                              "carol@example.test"]
    assert len(conforms("listUsers", api.get("/users", params={"domain": "example.test"}))) \
        == 3
    error(api.get("/users", params={"domain": "nowhere.test"}), 404)
    detail = conforms("getUser", api.get("/users/alice@example.test"))
    assert {m["name"] for m in detail["mailboxes"]} == {"INBOX", "Drafts", "Sent", "Trash",
                                                          "Junk", "Archive"}
    error(api.get("/users/zed@example.test"), 404, "address")
    error(api.get("/users/not-an-address"), 400, "address")

    # A new password is what IMAP then takes (over the real listener).
    patched = conforms("updateUser", api.patch("/users/alice@example.test", json={
        "password": "second pw", "quota": "1G"}))
    assert patched["quota"] == 1024**3
    port = admin.server.port("imaps")
    with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=admin.server.ssl_context()) as imap, \
            pytest.raises(imaplib.IMAP4.error):
        imap.login("alice@example.test", "first pw")
    with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=admin.server.ssl_context()) as imap:
        assert imap.login("alice@example.test", "second pw")[0] == "OK"
    error(api.patch("/users/alice@example.test", json={}), 400)
    error(api.patch("/users/alice@example.test", json={"quota": 1.5}), 400, "quota")
    assert conforms("updateUser", api.patch("/users/alice@example.test",
                                            json={"quota": 5.0}))["quota"] == 5
    error(api.patch("/users/zed@example.test", json={"quota": 1}), 404, "address")

    # The account's own POP3 policy (null: the config's); a field left out keeps its value.
    assert (patched["pop3_delete"], patched["pop3_expire_days"]) == (None, None)
    hidden = conforms("updateUser", api.patch("/users/alice@example.test", json={
        "pop3_delete": "hide", "pop3_expire_days": 30}))
    assert (hidden["pop3_delete"], hidden["pop3_expire_days"]) == ("hide", 30)
    kept = conforms("updateUser", api.patch("/users/alice@example.test", json={
        "pop3_expire_days": None}))
    assert (kept["pop3_delete"], kept["pop3_expire_days"]) == ("hide", None)
    acct = admin.server.run(admin.store.get_account("alice@example.test"))
    assert (acct.pop3_delete, acct.pop3_expire_days) == ("hide", None)
    error(api.patch("/users/alice@example.test", json={"pop3_delete": "shred"}), 400,
          "pop3_delete")
    error(api.patch("/users/alice@example.test", json={"pop3_expire_days": 36501}), 400,
          "pop3_expire_days")

    conforms("deleteUser", api.delete("/users/bob@example.test"))
    error(api.get("/users/bob@example.test"), 404, "address")
    error(api.delete("/users/bob@example.test"), 404, "address")


# --- aliases ---------------------------------------------------------------------------------

def test_aliases(api: httpx.Client) -> None:
    conforms("createDomain", api.post("/domains", json={"name": "example.test"}))
    conforms("createDomain", api.post("/domains", json={"name": "other.test"}))
    alias = conforms("createAlias", api.post("/aliases", json={
        "source": "Info@example.test", "destinations": ["a@example.test", "x@remote.org"]}))
    assert alias == {"source": "info@example.test",
                     "destinations": ["a@example.test", "x@remote.org"]}
    conforms("createAlias", api.post("/aliases", json={"source": "@other.test",
                                                       "destinations": ["a@example.test"]}))
    error(api.post("/aliases", json={"source": "info@example.test",
                                     "destinations": ["b@example.test"]}), 409, "source")
    error(api.post("/aliases", json={"source": "info@nowhere.test",
                                     "destinations": ["b@example.test"]}), 404, "source")
    error(api.post("/aliases", json={"source": "sales@example.test", "destinations": []}), 400,
          "destinations")
    error(api.post("/aliases", json={"source": "sales@example.test",
                                     "destinations": ["not an address"]}), 400, "destinations")
    error(api.post("/aliases", json={"source": "sales@", "destinations": ["a@b.test"]}), 400,
          "source")
    assert len(conforms("listAliases", api.get("/aliases"))) == 2
    assert [a["source"] for a in conforms("listAliases", api.get(
        "/aliases", params={"domain": "other.test"}))] == ["@other.test"]
    error(api.get("/aliases", params={"domain": "nowhere.test"}), 404, "domain")
    assert conforms("getAlias", api.get("/aliases/@other.test"))["source"] == "@other.test"
    error(api.get("/aliases/nobody@example.test"), 404, "source")
    conforms("deleteAlias", api.delete("/aliases/info@example.test"))
    error(api.delete("/aliases/info@example.test"), 404, "source")


# --- sending limits and holds ----------------------------------------------------------------

def test_limits_and_holds(admin: AdminSite, api: httpx.Client) -> None:
    conforms("createDomain", api.post("/domains", json={"name": "example.test"}))
    for name in ("a", "b"):
        conforms("createUser", api.post("/users", json={"address": f"{name}@example.test",
                                                        "password": "pw"}))
    acct = conforms("getLimits", api.get("/limits/a@example.test"))
    assert acct["kind"] == "account" and acct["messages_per_hour"] is None
    assert acct["effective"]["messages_per_hour"] == 180
    assert acct["usage"] == {"sent": 0, "defers_failures": 0, "attempts": 0}

    dom = conforms("updateLimits", api.patch("/limits/example.test", json={
        "messages_per_hour": 100, "defers_failures_percent": 60}))
    assert (dom["kind"], dom["messages_per_hour"], dom["defers_failures_percent"]) == \
        ("domain", 100, 60)
    acct = conforms("updateLimits", api.patch("/limits/a@example.test", json={
        "messages_per_hour": 500, "sending_held": True}))
    # The lower of the account's and the domain's applies.
    assert (acct["messages_per_hour"], acct["effective"]["messages_per_hour"]) == (500, 100)
    assert acct["sending_held"] is True
    assert admin.server.run(admin.store.get_account("a@example.test")).sending_held
    cleared = conforms("updateLimits", api.patch("/limits/a@example.test", json={
        "messages_per_hour": None}))
    assert cleared["messages_per_hour"] is None

    dom = conforms("updateLimits", api.patch("/limits/example.test", json={
        "sending_held": True}))
    assert (dom["accounts"], dom["accounts_held"]) == (2, 2)
    dom = conforms("updateLimits", api.patch("/limits/example.test", json={
        "sending_held": False}))
    assert dom["accounts_held"] == 0

    error(api.patch("/limits/a@example.test", json={"defers_failures_percent": 101}), 400,
          "defers_failures_percent")
    error(api.patch("/limits/a@example.test", json={"messages_per_hour": -1}), 400,
          "messages_per_hour")
    error(api.patch("/limits/a@example.test", json={"messages_per_hour": "10"}), 400,
          "messages_per_hour")
    error(api.patch("/limits/a@example.test", json={}), 400)
    error(api.get("/limits/zed@example.test"), 404, "target")
    error(api.get("/limits/nowhere.test"), 404, "target")
    error(api.get("/limits/bad..domain"), 400, "target")
    assert conforms("resetUsage", api.post("/limits/a@example.test/reset")) == \
        {"events_forgotten": 0}
    conforms("resetUsage", api.post("/limits/example.test/reset"))
    error(api.post("/limits/zed@example.test/reset"), 404, "target")


# --- the queue -------------------------------------------------------------------------------

def test_queue(admin: AdminSite, api: httpx.Client) -> None:
    conforms("createDomain", api.post("/domains", json={"name": "example.test"}))
    conforms("createUser", api.post("/users", json={"address": "a@example.test",
                                                    "password": "pw"}))
    assert conforms("listQueue", api.get("/queue")) == []
    first = enqueue(admin, "a@example.test", ["x@remote.test", "y@remote.test"])
    second = enqueue(admin, "a@example.test", ["z@remote.test"])
    listed = conforms("listQueue", api.get("/queue"))
    assert [e["id"] for e in listed] == [first, second]
    assert [r["address"] for r in listed[0]["recipients"]] == ["x@remote.test", "y@remote.test"]
    entry = conforms("getQueueEntry", api.get(f"/queue/{first}"))
    assert entry["sender"] == "a@example.test" and entry["held"] is False
    assert conforms("updateQueueEntry", api.patch(f"/queue/{first}", json={"held": True}
                                                  ))["held"] is True
    assert admin.server.run(admin.store.get_queue_entry(first)).held
    conforms("updateQueueEntry", api.patch(f"/queue/{first}", json={"held": False}))
    error(api.patch(f"/queue/{first}", json={"held": "yes"}), 400, "held")
    assert conforms("flushQueueEntry", api.post(f"/queue/{first}/flush"))["flushed"] >= 0
    assert conforms("flushQueue", api.post("/queue/flush"))["flushed"] >= 0
    conforms("deleteQueueEntry", api.delete(f"/queue/{second}"))
    assert admin.server.run(admin.store.get_queue_entry(second)) is None
    error(api.get(f"/queue/{second}"), 404, "id")
    error(api.delete(f"/queue/{second}"), 404, "id")
    error(api.post(f"/queue/{second}/flush"), 404, "id")
    error(api.get("/queue/abc"), 400, "id")
    error(api.get("/queue/0"), 400, "id")
    error(api.get(f"/queue/{2**64}"), 400, "id")


# --- a domain's token ------------------------------------------------------------------------

def test_a_domain_token_sees_and_changes_only_its_domain(admin: AdminSite,
                                                         api: httpx.Client) -> None:
    for name in ("mine.test", "theirs.test"):
        conforms("createDomain", api.post("/domains", json={"name": name}))
        conforms("createUser", api.post("/users", json={"address": f"u@{name}",
                                                        "password": "pw"}))
        conforms("createAlias", api.post("/aliases", json={"source": f"info@{name}",
                                                           "destinations": [f"u@{name}"]}))
    mine_q = enqueue(admin, "u@mine.test", ["x@remote.test"])
    theirs_q = enqueue(admin, "u@theirs.test", ["x@remote.test"])
    with admin.client(admin.token("reseller", "mine.test")) as c:
        assert [d["name"] for d in conforms("listDomains", c.get("/domains"))] == ["mine.test"]
        conforms("getDomain", c.get("/domains/mine.test"))
        error(c.get("/domains/theirs.test"), 403, "name")
        error(c.get("/domains/unknown.test"), 403, "name")    # says nothing of existence
        error(c.post("/domains", json={"name": "new.test"}), 403, "name")
        error(c.delete("/domains/theirs.test"), 403, "name")

        assert [u["address"] for u in conforms("listUsers", c.get("/users"))] == ["u@mine.test"]
        error(c.get("/users", params={"domain": "theirs.test"}), 403, "domain")
        conforms("createUser", c.post("/users", json={"address": "v@mine.test",
                                                      "password": "pw"}))
        error(c.post("/users", json={"address": "v@theirs.test", "password": "pw"}), 403,
              "address")
        error(c.get("/users/u@theirs.test"), 403, "address")
        error(c.patch("/users/u@theirs.test", json={"quota": 1}), 403, "address")
        error(c.delete("/users/u@theirs.test"), 403, "address")

        assert [a["source"] for a in conforms("listAliases", c.get("/aliases"))] == \
            ["info@mine.test"]
        error(c.post("/aliases", json={"source": "@theirs.test",
                                       "destinations": ["u@mine.test"]}), 403, "source")
        error(c.get("/aliases/info@theirs.test"), 403, "source")
        error(c.delete("/aliases/info@theirs.test"), 403, "source")

        conforms("getLimits", c.get("/limits/mine.test"))
        error(c.get("/limits/theirs.test"), 403, "target")
        error(c.patch("/limits/u@theirs.test", json={"sending_held": True}), 403, "target")
        error(c.post("/limits/theirs.test/reset"), 403, "target")

        assert [e["id"] for e in conforms("listQueue", c.get("/queue"))] == [mine_q]
        error(c.get(f"/queue/{theirs_q}"), 403, "id")
        error(c.delete(f"/queue/{theirs_q}"), 403, "id")
        error(c.patch(f"/queue/{theirs_q}", json={"held": True}), 403, "id")
        conforms("flushQueue", c.post("/queue/flush"))
    # Nothing of theirs changed.
    assert admin.server.run(admin.store.get_account("u@theirs.test")) is not None
    theirs = admin.server.run(admin.store.get_queue_entry(theirs_q))
    assert theirs is not None and not theirs.held


# --- malformed requests ----------------------------------------------------------------------

def test_bad_json_and_unknown_routes(api: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    assert "not valid JSON" in error(api.post("/domains", content=b'{"name": ', headers=headers),
                                     400)
    error(api.post("/domains", content=b"\xff\xfe", headers=headers), 400)
    error(api.post("/domains", content=b'["example.test"]', headers=headers), 400)
    error(api.post("/domains", content=b"", headers=headers), 400)
    error(api.post("/domains", content=b"[" * 100000 + b"]" * 100000, headers=headers), 400)
    error(api.get("/nothing/here"), 404)
    r = api.put("/domains")
    error(r, 405)
    assert r.headers["allow"] == "GET, POST"


def test_bodies_over_max_body_size_get_413(make_admin: Any) -> None:
    """[http] max_body_size, announced by Content-Length or found while reading a chunked
    body."""
    admin = make_admin(http={"max_body_size": "1K"})
    with admin.client(admin.token()) as c:
        big = {"name": "x" * 2000 + ".test"}
        assert "1024" in error(c.post("/domains", json=big), 413)

        def chunks() -> Any:
            for _ in range(4):
                yield b" " * 600
        error(c.post("/domains", content=chunks(), headers={"Content-Type": "application/json"}),
              413)
        # Just under the limit is read and judged on its merits.
        conforms("createDomain", c.post("/domains", json={"name": "example.test"}))


def test_clients_outside_admin_from_get_403(make_admin: Any) -> None:
    admin = make_admin(http={"admin_from": ["192.0.2.0/24", "2001:db8::/32"]})
    token = admin.token()
    with admin.client(token) as c:
        assert "admin_from" in error(c.get("/domains"), 403)
        error(c.get("/openapi.json"), 403)
    assert httpx.get(admin.url("/metrics")).status_code == 403


def test_slowly_sent_body_within_the_limit_is_accepted(api: httpx.Client,
                                                       admin: AdminSite) -> None:
    """A body in several TCP segments is read whole (the limit counts bytes, not reads)."""
    token = api.headers["authorization"]
    body = b'{"name": "example.test"}'
    with socket.create_connection(("127.0.0.1", admin.port)) as sock:
        sock.sendall(b"POST /api/v1/domains HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Authorization: " + token.encode() + b"\r\nContent-Type: application/json"
                     b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        for i in range(0, len(body), 5):
            sock.sendall(body[i:i + 5])
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201")


def test_the_pop3_policy_schema_follows_the_store() -> None:
    from casella.http.api_schemas import POP3_DELETE, POP3_EXPIRE
    from casella.store.model import POP3_DELETE_POLICIES, POP3_MAX_EXPIRE_DAYS

    assert POP3_DELETE["enum"] == [*POP3_DELETE_POLICIES, None]
    assert POP3_EXPIRE["maximum"] == POP3_MAX_EXPIRE_DAYS


def test_the_document_is_made_from_the_table() -> None:
    """Every operation of the table, with its schemas, and nothing else."""
    described = {(method.upper(), path): item
                 for path, methods in DOCUMENT["paths"].items()
                 for method, item in methods.items()}
    assert set(described) == {(op.method, op.path) for op in OPERATIONS}
    for op in OPERATIONS:
        item = described[(op.method, op.path)]
        assert item["operationId"] == op.op_id
        if op.body is not None:
            assert item["requestBody"]["content"]["application/json"]["schema"] is op.body
        assert str(op.status) in item["responses"]
        for status in op.all_errors():
            assert str(status) in item["responses"]
    assert DOCUMENT["openapi"] == "3.1.0"
