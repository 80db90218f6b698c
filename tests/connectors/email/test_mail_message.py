"""The report's e-mail as built: its MIME tree, headers and inline images, parsed back with the
standard library's `email` package, and its stable Message-ID."""

from __future__ import annotations

import email
import email.policy
import email.utils
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from returnbridge.connectors.email.message import (
    InlineImage,
    build_message,
    domain_of,
    message_bytes,
    message_id_for,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
CHARTS = (
    InlineImage("money-by-method@returnbridge", "money-by-method.png", PNG, "Money by method"),
    InlineImage("returns-by-day@returnbridge", "returns-by-day.png", PNG[::-1], "Returns by day"),
)
HTML = (
    "<h1>Returns in Oktober 2026 — 12 345,67 €</h1>"
    '<img src="cid:money-by-method@returnbridge" alt="Money by method">'
    '<img src="cid:returns-by-day@returnbridge" alt="Returns by day">' + "<p>" + "x" * 500 + "</p>"
)
TEXT = "Returns in Oktober 2026: 12 345,67 €\nSee the HTML part for the charts.\n"
MESSAGE_ID = "<month-end.2026-10.3f2a9c1b.0@example.com>"
DATE = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)


def _built(**overrides: object) -> EmailMessage:
    values: dict[str, object] = {
        "subject": "[returnbridge] Month-end 2026-10 — Übersicht",
        "sender": "returnbridge@example.com",
        "recipients": ["finance@example.com", "ops@example.com"],
        "html": HTML,
        "text": TEXT,
        "images": CHARTS,
        "message_id": MESSAGE_ID,
        "date": DATE,
        "headers": {"X-Returnbridge-Report": "month-end 2026-10"},
    }
    values.update(overrides)
    return build_message(**values)  # type: ignore[arg-type]


def _parsed(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message_bytes(msg), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _lf(text: str) -> str:
    """Text as written: quoted-printable on the wire has CRLF line ends, and so has its content."""
    return text.replace("\r\n", "\n")


def test_the_message_is_alternative_text_then_related_html_with_its_images() -> None:
    parsed = _parsed(_built())
    tree = [(part.get_content_type(), part.is_multipart()) for part in parsed.walk()]
    assert tree == [
        ("multipart/alternative", True),
        ("text/plain", False),
        ("multipart/related", True),
        ("text/html", False),
        ("image/png", False),
        ("image/png", False),
    ]
    plain, related = parsed.iter_parts()
    assert plain.get_content_charset() == "utf-8"
    assert _lf(plain.get_content()) == TEXT
    html, *images = related.iter_parts()
    assert html.get_content_charset() == "utf-8"
    assert _lf(html.get_content()).rstrip("\n") == HTML
    assert [i.get_content() for i in images] == [c.png for c in CHARTS]


def test_every_image_has_its_content_id_is_inline_and_is_referenced_by_the_html() -> None:
    parsed = _parsed(_built())
    html_part = parsed.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    images = [p for p in parsed.walk() if p.get_content_maintype() == "image"]
    assert [p["Content-ID"] for p in images] == [f"<{c.cid}>" for c in CHARTS]
    assert [p.get_content_disposition() for p in images] == ["inline", "inline"]
    assert [p.get_filename() for p in images] == [c.filename for c in CHARTS]
    for chart in CHARTS:
        assert f'src="cid:{chart.cid}"' in html


def test_the_headers_survive_the_round_trip() -> None:
    parsed = _parsed(_built())
    assert parsed["Subject"] == "[returnbridge] Month-end 2026-10 — Übersicht"
    assert parsed["From"] == "returnbridge@example.com"
    assert [a.addr_spec for a in parsed["To"].addresses] == [
        "finance@example.com",
        "ops@example.com",
    ]
    assert parsed["Message-ID"] == MESSAGE_ID
    assert email.utils.parsedate_to_datetime(parsed["Date"]) == DATE
    assert parsed["X-Returnbridge-Report"] == "month-end 2026-10"
    assert parsed["MIME-Version"] == "1.0"
    assert [p["MIME-Version"] for p in parsed.walk()][1:] == [None] * 5  # the message's only


def test_the_bytes_are_ascii_with_crlf_line_ends_and_short_lines() -> None:
    raw = message_bytes(_built())
    assert raw.isascii()  # quoted-printable text, base64 images, RFC 2047 subject
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998  # RFC 5322's hard limit
    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert b"Content-Transfer-Encoding: base64" in raw


def test_a_message_without_images_keeps_the_html_part_plain() -> None:
    parsed = _parsed(_built(images=()))
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]


def test_the_date_keeps_its_zone() -> None:
    cet = timezone(timedelta(hours=1))
    parsed = _parsed(_built(date=datetime(2026, 11, 1, 8, 30, tzinfo=cet)))
    assert parsed["Date"].endswith("+0100")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"date": datetime(2026, 11, 1, 7, 30)}, "naive"),
        ({"recipients": []}, "at least one recipient"),
        ({"images": (CHARTS[0], CHARTS[0])}, "cids must be unique"),
    ],
)
def test_what_cannot_make_a_good_message_is_refused(
    overrides: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        _built(**overrides)


# --------------------------------------------------------------------------- Message-ID


def test_the_message_id_is_stable_and_a_dot_atom() -> None:
    first = message_id_for("month-end:2026-10:3f2a9c1b", 0, "example.com")
    assert first == "<month-end.2026-10.3f2a9c1b.0@example.com>"
    assert message_id_for("month-end:2026-10:3f2a9c1b", 0, "Example.COM") == first
    assert message_id_for("month-end:2026-10:3f2a9c1b", 1, "example.com") == (
        "<month-end.2026-10.3f2a9c1b.1@example.com>"
    )
    # what a dot-atom cannot hold becomes a dot, never two in a row nor one at an end
    assert message_id_for(" :month end//ok?: ", 2, "localhost") == "<month.end//ok?.2@localhost>"
    parsed = email.message_from_string(f"Message-ID: {first}\n\n", policy=email.policy.default)[
        "Message-ID"
    ]
    assert parsed == first


def test_a_long_key_is_cut_and_keeps_a_hash_of_itself() -> None:
    one = message_id_for("k" * 300 + "a", 0, "example.com")
    two = message_id_for("k" * 300 + "b", 0, "example.com")
    assert one != two
    assert len(one) < 160


@pytest.mark.parametrize(
    ("key", "sequence", "domain"),
    [("::", 0, "example.com"), ("k", -1, "example.com"), ("k", 0, "")],
)
def test_a_message_id_needs_a_key_a_sequence_and_a_domain(
    key: str, sequence: int, domain: str
) -> None:
    with pytest.raises(ValueError):
        message_id_for(key, sequence, domain)


@pytest.mark.parametrize(
    ("address", "domain"),
    [
        ("returnbridge@Example.com", "example.com"),
        ("Returnbridge <reports@mail.example.org>", "mail.example.org"),
        ("returnbridge@localhost", "localhost"),
    ],
)
def test_domain_of(address: str, domain: str) -> None:
    assert domain_of(address) == domain


@pytest.mark.parametrize("address", ["no-at-sign", "@example.com", "user@", ""])
def test_domain_of_an_address_without_one(address: str) -> None:
    with pytest.raises(ValueError, match="not an e-mail address"):
        domain_of(address)
