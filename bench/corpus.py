"""Deterministic, realistic test messages: the same bytes for casella and for the peers.

Lives here: `message(address, index)` (one mailbox message of real-world shape: Received chains,
a folded DKIM-Signature, display names, sometimes RFC 2047 subjects, threads, newsletters;
text/plain, multipart/alternative or multipart/mixed with a base64 attachment; a size mix
skewed to small messages), `sized_message(...)` (exactly N bytes, for SMTP ingest) and the
Maildir name/LF conversion used to seed Dovecot. Everything depends only on (address, index),
so a mailbox seeded twice, or into two servers, holds identical messages.

Must never: import casella, asyncio or anything doing I/O; use the global `random` state.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
from dataclasses import dataclass

CRLF = b"\r\n"

# A rare word planted in about 1 message in 100, for SEARCH TEXT (found in body or subject).
NEEDLE = "quetzalfeather"
NEEDLE_EVERY = 97

# Internal dates run from here, one message every ~40 minutes on average.
_EPOCH = 1704067200  # 2024-01-01T00:00:00Z
_STEP = 2400

_WORDS_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which "
    "she do how their if will up other about out many then them these so some her would make "
    "like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part "
    "meeting invoice report project schedule budget review quarter contract delivery shipment "
    "order account payment team update release server customer support ticket question answer "
    "thanks regards please attached document draft version proposal agenda minutes deadline "
    "tomorrow monday friday office travel hotel flight booking reservation confirmation "
    "newsletter offer discount subscription family weekend dinner birthday photos holiday "
    "garden weather football concert tickets school lesson"
)
_WORDS = tuple(_WORDS_TEXT.split())
_FIRST_TEXT = (
    "Anna Marco Julia Peter Sofia Lukas Elena Tom Maria Jan Clara Paul Laura David Eva Simon "
    "Nina Felix Sara Jonas Lea Max Irene Hugo Olga Ivan Chloe Omar Ines Karl"
)
_FIRST = tuple(_FIRST_TEXT.split())
_LAST_TEXT = (
    "Rossi Mueller Schmidt Bianchi Dubois Martin Novak Kowalski Jensen Garcia Silva Weber "
    "Fischer Moreau Conti Ricci Horvat Nielsen Berg Costa Ferreira Meyer Wagner Lopez"
)
_LAST = tuple(_LAST_TEXT.split())
_DOMAINS_TEXT = (
    "example.net example.org mail.example.com news.example.net shop.example.org "
    "lists.example.com corp.example.net uni.example.org"
)
_DOMAINS = tuple(_DOMAINS_TEXT.split())
_MAILERS = ("Microsoft Outlook 16.0", "Apple Mail (2.3774.500.171)", "Mozilla Thunderbird 115.6",
            "Roundcube Webmail/1.6.5", "K-9 Mail for Android", "iPhone Mail (21D61)")
_UTF8_SUBJECTS = ("Grüße aus München", "Réunion de lundi", "Привет из Москвы", "Café über alles",
                  "Ñandú en el zoológico", "Zażółć gęślą jaźń")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _build_paragraphs(n: int) -> list[bytes]:
    rng = random.Random(1)
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(25, 110))]
        words[0] = words[0].capitalize()
        lines, line = [], ""
        for w in words:
            if len(line) + len(w) + 1 > 72:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}" if line else w
        lines.append(line + ".")
        out.append(("\r\n".join(lines) + "\r\n").encode())
    return out


_PARAS = _build_paragraphs(600)
_B64_LINES: list[bytes] = []


def _b64_lines() -> list[bytes]:
    """~1 MiB of base64 (76-character lines), made once and sliced for attachments."""
    if not _B64_LINES:
        rng = random.Random(2)
        raw = rng.randbytes(768 * 1024)
        text = base64.b64encode(raw)
        _B64_LINES.extend(text[i:i + 76] + CRLF for i in range(0, len(text), 76))
    return _B64_LINES


def rfc2822_date(ts: int, offset_minutes: int = 0) -> str:
    t = time.gmtime(ts + offset_minutes * 60)
    sign = "+" if offset_minutes >= 0 else "-"
    off = abs(offset_minutes)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{off // 60:02d}{off % 60:02d}")


def _encoded_word(text: str) -> str:
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def _rng(address: str, index: int) -> random.Random:
    seed = hashlib.blake2b(f"{address}\0{index}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(seed, "big"))


def _pick_size(rng: random.Random) -> int:
    """Size mix of a real mailbox, skewed small (mean about 11 KB)."""
    r = rng.random()
    if r < 0.60:
        return rng.randint(1200, 4000)
    if r < 0.90:
        return rng.randint(4000, 16000)
    if r < 0.98:
        return rng.randint(16000, 64000)
    return rng.randint(64000, 256000)


def _text(rng: random.Random, size: int, needle: bool) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total < size:
        p = _PARAS[rng.randrange(len(_PARAS))]
        parts.append(p)
        parts.append(CRLF)
        total += len(p) + 2
    if needle:
        parts.insert(min(1, len(parts)), f"Reference {NEEDLE} noted.\r\n\r\n".encode())
    return b"".join(parts)


def _html(text: bytes) -> bytes:
    paras = text.split(b"\r\n\r\n")
    body = b"".join(b"<p>" + p.replace(b"\r\n", b" ") + b"</p>\r\n" for p in paras if p)
    return (b"<html><head><meta charset=\"utf-8\"></head><body>\r\n" + body +
            b"</body></html>\r\n")


def _attachment(rng: random.Random, size: int) -> bytes:
    lines = _b64_lines()
    n = max(1, size // 78)
    start = rng.randrange(0, max(1, len(lines) - n))
    return b"".join(lines[start:start + n])


@dataclass(frozen=True, slots=True)
class Message:
    data: bytes                 # the message with CRLF line ends, as SMTP would deliver it
    internaldate: int           # seconds since the epoch
    flags: tuple[str, ...]      # IMAP system flags


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}"


def _headers(rng: random.Random, address: str, index: int, date: int, subject: str,
             ctype: str, extra: list[str]) -> list[str]:
    name, sender = _person(rng)
    sdomain = sender.split("@", 1)[1]
    relay = f"mail-{rng.choice('abcdefgh')}{rng.randint(1, 99)}.{sdomain}"
    ip = f"198.51.100.{rng.randint(1, 254)}"
    qid = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTVWXYZ") for _ in range(12))
    msgid = f"<{rng.getrandbits(64):016x}.{index}@{sdomain}>"
    tz = rng.choice((0, 60, 120, -300, -420, 330))
    bh = base64.b64encode(rng.randbytes(32)).decode()
    b = base64.b64encode(rng.randbytes(256)).decode()
    h = [
        f"Return-Path: <{sender}>",
        f"Delivered-To: {address}",
        (f"Received: from {relay} ({relay} [{ip}])\r\n\tby mx.bench.test with ESMTPS id {qid}"
         f"\r\n\tfor <{address}>; {rfc2822_date(date + 2)}"),
        (f"Received: by {relay} with SMTP id {qid.lower()}{index};\r\n        "
         f"{rfc2822_date(date + 1, tz)}"),
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={sdomain}; s=s2024;\r\n"
        f"\th=from:to:subject:date:message-id:mime-version;\r\n\tbh={bh};\r\n"
        "\tb=" + "\r\n\t ".join(b[i:i + 70] for i in range(0, len(b), 70)),
        "MIME-Version: 1.0",
        f"From: \"{name}\" <{sender}>",
        f"To: {address}",
    ]
    if rng.random() < 0.25:
        cname, caddr = _person(rng)
        h.append(f"Cc: {cname} <{caddr}>, {_person(rng)[1]}")
    h.append(f"Subject: {subject}")
    h.append(f"Date: {rfc2822_date(date, tz)}")
    h.append(f"Message-ID: {msgid}")
    if rng.random() < 0.3:
        ref = f"<{rng.getrandbits(64):016x}@{sdomain}>"
        h.append(f"In-Reply-To: {ref}")
        h.append(f"References: <{rng.getrandbits(64):016x}@{sdomain}>\r\n {ref}")
    h.append(f"X-Mailer: {rng.choice(_MAILERS)}")
    h.extend(extra)
    h.append(f"Content-Type: {ctype}")
    return h


def _subject(rng: random.Random, needle: bool) -> tuple[str, list[str]]:
    extra: list[str] = []
    r = rng.random()
    if r < 0.12:
        subject = _encoded_word(rng.choice(_UTF8_SUBJECTS))
    elif r < 0.25:
        subject = f"[{rng.choice(('announce', 'dev', 'users'))}] " + " ".join(
            rng.choice(_WORDS) for _ in range(rng.randint(3, 8)))
        extra.append(f"List-Id: <{rng.choice(('announce', 'dev', 'users'))}.lists.example.com>")
        extra.append("List-Unsubscribe: <mailto:unsubscribe@lists.example.com>, "
                     "<https://lists.example.com/u/x>")
    else:
        subject = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 9))).capitalize()
        if rng.random() < 0.3:
            subject = "Re: " + subject
    if needle and rng.random() < 0.5:
        subject += f" {NEEDLE}"
    return subject, extra


def _body(rng: random.Random, size: int, needle: bool) -> tuple[str, list[str], bytes]:
    """(Content-Type value, extra headers, body bytes) of roughly `size` bytes."""
    kind = rng.random()
    if size > 20000 and kind < 0.7:
        # multipart/mixed: a short text and a base64 attachment carrying most of the size.
        boundary = f"----=_Part_{rng.getrandbits(48):012x}"
        text = _text(rng, min(1500, size // 8), needle)
        fname = rng.choice(("report.pdf", "photo.jpg", "invoice.pdf", "slides.pptx", "data.xlsx"))
        mime = {"pdf": "application/pdf", "jpg": "image/jpeg", "pptx": "application/vnd.ms-"
                "powerpoint", "xlsx": "application/vnd.ms-excel"}[fname.rsplit(".", 1)[1]]
        body = b"".join((
            b"This is a multi-part message in MIME format.\r\n\r\n",
            f"--{boundary}\r\n".encode(),
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
            text, f"\r\n--{boundary}\r\n".encode(),
            f"Content-Type: {mime}; name=\"{fname}\"\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename=\"{fname}\"\r\n\r\n".encode(),
            _attachment(rng, size - len(text)), f"\r\n--{boundary}--\r\n".encode()))
        return f"multipart/mixed;\r\n\tboundary=\"{boundary}\"", [], body
    if kind < 0.45:
        boundary = f"b1_{rng.getrandbits(64):016x}"
        text = _text(rng, size * 2 // 5, needle)
        body = b"".join((
            f"--{boundary}\r\n".encode(),
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
            text, f"\r\n--{boundary}\r\n".encode(),
            b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
            _html(text), f"\r\n--{boundary}--\r\n".encode()))
        return f"multipart/alternative; boundary=\"{boundary}\"", [], body
    return ("text/plain; charset=utf-8; format=flowed", ["Content-Transfer-Encoding: 7bit"],
            _text(rng, size, needle))


def message(address: str, index: int) -> Message:
    """Message number `index` (0-based) of `address`'s seeded INBOX."""
    rng = _rng(address, index)
    needle = index % NEEDLE_EVERY == NEEDLE_EVERY // 2
    size = _pick_size(rng)
    date = _EPOCH + index * _STEP + rng.randint(0, _STEP - 1)
    subject, extra = _subject(rng, needle)
    ctype, body_extra, body = _body(rng, max(200, size - 1800), needle)
    head = _headers(rng, address, index, date, subject, ctype, extra + body_extra)
    data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    r = rng.random()
    flags: list[str] = []
    if r < 0.7:
        flags.append("\\Seen")
        if rng.random() < 0.15:
            flags.append("\\Answered")
    if rng.random() < 0.03:
        flags.append("\\Flagged")
    return Message(data, date + 5, tuple(flags))


def sized_message(sender: str, recipient: str, size: int, serial: int) -> bytes:
    """A plain-text message of exactly `size` bytes (CRLF line ends), for SMTP ingest."""
    rng = _rng(recipient, -1 - serial)
    date = _EPOCH + serial
    head = (f"From: Bench Sender <{sender}>\r\nTo: <{recipient}>\r\n"
            f"Subject: ingest test {serial}\r\nDate: {rfc2822_date(date)}\r\n"
            f"Message-ID: <ingest.{serial}.{rng.getrandbits(40):010x}@bench.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    need = max(2, size - len(head))
    body = _text(rng, need, False)[:need - 2]
    if body.endswith(b"\r"):  # never leave a bare CR before the final CRLF
        body = body[:-1] + b" "
    body += CRLF
    return head + body


# --- Maildir (for the peers) -----------------------------------------------------------------

_MAILDIR_FLAG = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                 "\\Deleted": "T"}


def maildir_name(msg: Message, serial: int, lf_size: int) -> str:
    """A cur/ file name with S= (file size) and W= (RFC 822 size with CRLF), as Dovecot writes
    them, so Dovecot needs no stat or read to know sizes."""
    letters = "".join(sorted(_MAILDIR_FLAG[f] for f in msg.flags if f in _MAILDIR_FLAG))
    return (f"{msg.internaldate}.M{serial}P1.bench,S={lf_size},W={len(msg.data)}:2,{letters}")


def to_lf(data: bytes) -> bytes:
    """Maildir files hold LF line ends (what Postfix's virtual and Dovecot's LDA write)."""
    return data.replace(CRLF, b"\n")
