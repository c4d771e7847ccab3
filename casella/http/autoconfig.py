"""The autoconfiguration endpoints mail programs ask, and the MTA-STS policy, over HTTP.

Lives here: the aiohttp handlers for Thunderbird (`/mail/config-v1.1.xml`,
`/.well-known/autoconfig/mail/config-v1.1.xml`), Outlook (POST `/autodiscover/autodiscover.xml`,
`/autodiscover/autodiscover.json`), Apple (`/apple/<address>.mobileconfig`) and MTA-STS
(`/.well-known/mta-sts.txt` on the `mta-sts.<domain>` host, RFC 8461 §3.3). Each answers only
for a hosted domain (404 otherwise) and gives every local part of that domain the same answer,
so nobody learns from it whether an account exists. Must never: look an account up, or put
request text into an answer unescaped (the documents are built by casella.http.clientconfig
with an XML serializer).
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from aiohttp import web

from casella.errors import InvalidName
from casella.http import clientconfig, mobileconfig, mtasts
from casella.http.clientconfig import AutodiscoverError
from casella.http.common import APP, SIGNER, settings_of
from casella.mail.addresses import normalize_address, normalize_domain

log = logging.getLogger("casella.http")

_XML = "application/xml"
_NOT_HOSTED = "no mail is hosted here for that domain\n"


async def _hosted(request: web.Request, domain: str) -> str | None:
    """The canonical name of `domain` when it is hosted here, else None."""
    try:
        name = normalize_domain(domain)
    except InvalidName:
        return None
    found = await request.app[APP].store.get_domain(name)
    return found.name if found is not None else None


def _address(text: str) -> str | None:
    try:
        return normalize_address(text)
    except InvalidName:
        return None


def _host_domain(request: web.Request, prefix: str) -> str:
    host = (request.host or "").lower()
    host = host.rpartition(":")[0] if ":" in host and not host.startswith("[") else host
    return host.removeprefix(prefix)


# --- Thunderbird ---------------------------------------------------------------------------------

async def thunderbird(request: web.Request) -> web.Response:
    """The domain comes from `emailaddress` when given, else from the host the client asked
    (`autoconfig.<domain>`, or the domain itself for the .well-known path)."""
    email = request.query.get("emailaddress")
    if email is not None:
        if "@" not in email:
            raise web.HTTPBadRequest(text="emailaddress must be an address\n")
        domain = email.rpartition("@")[2]
    else:
        domain = _host_domain(request, "autoconfig.")
    hosted = await _hosted(request, domain)
    if hosted is None:
        raise web.HTTPNotFound(text=_NOT_HOSTED)
    doc = clientconfig.thunderbird_config(settings_of(request.app[APP]), hosted)
    return web.Response(body=doc, content_type=_XML, charset="utf-8")


# --- Outlook -------------------------------------------------------------------------------------

def _pox_error(error: AutodiscoverError, status: int) -> web.Response:
    when = time.strftime("%H:%M:%S", time.gmtime())
    return web.Response(status=status, content_type=_XML, charset="utf-8",
                        body=clientconfig.pox_error(error, when, uuid.uuid4().hex[:10]))


async def autodiscover_xml(request: web.Request) -> web.Response:
    """The POX protocol: a request naming an address, the account settings in return."""
    try:
        req = clientconfig.parse_pox_request(await request.read())
    except AutodiscoverError as exc:
        return _pox_error(exc, 400)
    address = _address(req.email)
    if address is None:
        return _pox_error(AutodiscoverError(600, "Invalid Request"), 400)
    if req.response_schema != clientconfig.OUTLOOK_RESPONSE_NS:
        # Another schema (ActiveSync's mobilesync) is a service casella does not offer.
        return _pox_error(AutodiscoverError(601, "Provider is not available"), 200)
    if await _hosted(request, address.rpartition("@")[2]) is None:
        return _pox_error(AutodiscoverError(500, "Unknown domain"), 404)
    doc = clientconfig.pox_response(settings_of(request.app[APP]), address)
    return web.Response(body=doc, content_type=_XML, charset="utf-8")


def _json(status: int, body: dict[str, str]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def pox_url(request: web.Request) -> str:
    """Where Outlook finds the POX service: this server's name on the https listener (443,
    or the port it listens on)."""
    app = request.app[APP]
    https = app.bound.get("https")
    port = f":{https.port}" if https is not None and https.port != 443 else ""
    return f"https://{app.config.hostname}{port}/autodiscover/autodiscover.xml"


async def autodiscover_json(request: web.Request) -> web.Response:
    """`/autodiscover/autodiscover.json/v1.0/<address>?Protocol=…` and the older
    `/autodiscover/autodiscover.json?Email=<address>&Protocol=…`."""
    email = request.match_info.get("address") or request.query.get("Email", "")
    address = _address(email)
    if address is None:
        return _json(400, {"ErrorCode": "InvalidUser",
                           "ErrorMessage": "A valid email address must be given."})
    if await _hosted(request, address.rpartition("@")[2]) is None:
        return _json(404, {"ErrorCode": "NotFound",
                           "ErrorMessage": "No mail is hosted here for that domain."})
    protocol = next((v for k, v in request.query.items() if k.lower() == "protocol"), "")
    status, body = clientconfig.autodiscover_json(protocol, pox_url(request))
    return _json(status, body)


# --- Apple ---------------------------------------------------------------------------------------

async def apple_profile(request: web.Request) -> web.Response:
    """The profile for one address; `?protocol=pop3` for a POP3 account (default IMAP).
    Signed with the TLS certificate unless that is self-signed."""
    address = _address(request.match_info["address"])
    incoming = request.query.get("protocol", "imap").lower()
    if address is None or incoming not in ("imap", "pop3"):
        raise web.HTTPBadRequest(text="expected /apple/<address>.mobileconfig"
                                      "[?protocol=imap|pop3]\n")
    if await _hosted(request, address.rpartition("@")[2]) is None:
        raise web.HTTPNotFound(text=_NOT_HOSTED)
    try:
        data = mobileconfig.profile(settings_of(request.app[APP]), address, incoming)
    except mobileconfig.NoIncomingServer:
        raise web.HTTPNotFound(text=f"this server does not offer {incoming.upper()}\n")
    signer = request.app[SIGNER].identity
    if signer is not None:
        data = mobileconfig.sign(data, signer)
    filename = f"{address.replace('@', '-at-')}-{incoming}.mobileconfig"
    return web.Response(body=data, content_type=mobileconfig.MIME_TYPE, headers={
        "Content-Disposition": f'attachment; filename="{_ascii_filename(filename)}"'})


def _ascii_filename(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-._") else "_" for c in name)


# --- MTA-STS -------------------------------------------------------------------------------------

async def mta_sts_policy(request: web.Request) -> web.Response:
    domain = mtasts.policy_domain(request.host or "")
    if domain is None or await _hosted(request, domain) is None:
        raise web.HTTPNotFound(text=_NOT_HOSTED)
    app = request.app[APP]
    cfg = app.config.http
    text = mtasts.policy_text(app.config.hostname, cfg.mta_sts_mode, cfg.mta_sts_max_age)
    # RFC 8461 §3.3: media type "text/plain"; the policy may be cached by the sender.
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/mail/config-v1.1.xml", thunderbird),
        web.get("/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird),
        web.post("/autodiscover/autodiscover.xml", autodiscover_xml),
        web.post("/Autodiscover/Autodiscover.xml", autodiscover_xml),
        web.get("/autodiscover/autodiscover.json", autodiscover_json),
        web.get("/autodiscover/autodiscover.json/v1.0/{address}", autodiscover_json),
        web.get(r"/apple/{address:[^/]+}.mobileconfig", apple_profile),
        web.get(mtasts.POLICY_PATH, mta_sts_policy),
    ]
