"""Building the report's e-mail: one self-contained RFC 5322 message, stored whole in the outbox
and sent as stored, so a retry sends exactly the bytes (and the Message-ID) of the first try.

Layout (what mail clients show best): multipart/alternative of a text/plain part and a
multipart/related holding the text/html part and its PNG images, each referenced from the HTML
as `<img src="cid:...">`. Text parts are quoted-printable and images base64, so the message is
pure ASCII: it goes through any SMTP server (no 8BITMIME needed) and stores as text.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from typing import Final

# Characters allowed in an RFC 5322 dot-atom besides letters and digits (`atext`).
_NOT_ATEXT: Final = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
# Longest local part of a Message-ID we make (what is cut is replaced by a hash of it).
_ID_LIMIT: Final = 120


@dataclass(frozen=True)
class InlineImage:
    """A PNG shown inside the HTML part by `<img src="cid:{cid}">`."""

    cid: str  # without angle brackets, e.g. "money-by-method@returnbridge"
    filename: str  # e.g. "money-by-method.png"
    png: bytes
    alt: str


def build_message(
    *,
    subject: str,
    sender: str,
    recipients: Sequence[str],
    html: str,
    text: str,
    images: Sequence[InlineImage],
    message_id: str,
    date: datetime,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """The whole message: multipart/alternative [text/plain, multipart/related [text/html,
    image/png ...]] with From, To, Subject, Date (`date`, timezone-aware) and Message-ID
    (`message_id`, with its angle brackets, e.g. from `message_id_for`); `headers` are added as
    given (e.g. `X-Returnbridge-Report: month-end 2026-10`).

    Every image's `cid` must be unique, and the HTML should reference each one; an image it
    does not reference is still attached (clients show it at the end)."""
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError(f"date {date.isoformat()} is naive; pass a timezone-aware datetime")
    if not recipients:
        raise ValueError("a message needs at least one recipient")
    cids = [image.cid for image in images]
    if len(set(cids)) != len(cids):
        raise ValueError(f"inline image cids must be unique, got {cids}")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    if images:
        html_part = msg.get_body(preferencelist=("html",))
        assert isinstance(html_part, MIMEPart)
        for image in images:
            # add_related turns the text/html part into multipart/related [text/html, images].
            html_part.add_related(
                image.png,
                maintype="image",
                subtype="png",
                cid=f"<{image.cid}>",
                disposition="inline",
                filename=image.filename,
            )
    for part in msg.walk():  # MIME-Version belongs to the message, not to its parts
        if part is not msg:
            del part["MIME-Version"]
    return msg


def message_bytes(msg: EmailMessage) -> bytes:
    """`msg` as sent and stored: CRLF line ends, headers folded and encoded for SMTP."""
    return msg.as_bytes(policy=email.policy.SMTP)


def message_id_for(key: str, sequence: int, domain: str) -> str:
    """The Message-ID of message `sequence` (0 for the first, 1, 2 ... for each deliberate
    resend) of outbox `key`, e.g. `<month-end.2026-10.3f2a9c1b.0@example.com>`.

    Stable: the same key, sequence and domain give the same id on every run, so a re-rendered
    or retried message keeps it (clients show one message), while a resend gets a new one."""
    if sequence < 0:
        raise ValueError(f"sequence must be >= 0, got {sequence}")
    local = _dot_atom(key)
    if not local:
        raise ValueError(f"key {key!r} has nothing a Message-ID can use")
    if len(local) > _ID_LIMIT:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        local = f"{local[: _ID_LIMIT - 13].rstrip('.')}.{digest}"
    host = _dot_atom(domain.strip().lower())
    if not host:
        raise ValueError(f"domain {domain!r} has nothing a Message-ID can use")
    return f"<{local}.{sequence}@{host}>"


def domain_of(address: str) -> str:
    """The domain of an e-mail address (`Name <a@Example.com>` or `a@example.com`), lower-cased;
    ValueError when it has none."""
    _, addr = email.utils.parseaddr(address)
    local, at, domain = addr.rpartition("@")
    domain = domain.strip().lower()
    if not at or not local or not domain:
        raise ValueError(f"{address!r} is not an e-mail address with a domain")
    return domain


def _dot_atom(text: str) -> str:
    """`text` as a dot-atom: runs of other characters become one dot, no dot at either end."""
    return re.sub(r"\.{2,}", ".", _NOT_ATEXT.sub(".", text)).strip(".")
