"""SmtpSender against a real SMTP server on loopback (the aiosmtpd stand-in): what arrives, and
what every failure becomes (MailUnavailable: try later; MailRefused: a person must look), with a
message naming host:port, the stage and the server's answer, never the password. Also the
settings it reads (`MailSettings`)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from returnbridge.connectors.email.errors import (
    MailAuthRefused,
    MailError,
    MailRefused,
    MailUnavailable,
)
from returnbridge.connectors.email.message import (
    InlineImage,
    build_message,
    message_bytes,
    message_id_for,
)
from returnbridge.connectors.email.settings import MailSettings
from returnbridge.connectors.email.smtp import SmtpSender
from returnbridge.connectors.errors import AuthError, RejectedError, TransientError
from returnbridge.monthend.settings import MonthEndSettings
from returnbridge.settings import Settings
from returnbridge.simulators.mail import MailStandIn
from returnbridge.simulators.server import free_port

PASSWORD = "s3cret-Pa55word"
SENDER = "returnbridge@example.com"
RECIPIENTS = ["finance@example.com", "ops@example.com"]
PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 100
CHART = InlineImage("money-by-method@returnbridge", "money-by-method.png", PNG, "Money by method")


def _message(message_id: str = "<month-end.2026-10.3f2a9c1b.0@example.com>") -> bytes:
    return message_bytes(
        build_message(
            subject="[returnbridge] Month-end 2026-10",
            sender=SENDER,
            recipients=RECIPIENTS,
            html='<h1>October</h1><img src="cid:money-by-method@returnbridge" alt="chart">',
            text="October\n",
            images=[CHART],
            message_id=message_id,
            date=datetime(2026, 11, 1, 7, 0, tzinfo=UTC),
        )
    )


@pytest.fixture(scope="module")
def plain_server() -> Iterator[MailStandIn]:
    """An SMTP server without login or TLS (a local relay), shared by the module."""
    with MailStandIn() as standin:
        yield standin


@pytest.fixture
def relay(plain_server: MailStandIn) -> MailStandIn:
    plain_server.reset()
    return plain_server


@pytest.fixture
def auth_server() -> Iterator[MailStandIn]:
    with MailStandIn(user="reports", password=PASSWORD) as standin:
        yield standin


def _no_secret(exc: BaseException) -> None:
    assert PASSWORD not in str(exc)
    assert PASSWORD not in repr(exc.args)


# --------------------------------------------------------------------------- delivery


def test_a_message_arrives_whole_with_its_envelope(relay: MailStandIn) -> None:
    SmtpSender(relay.settings()).send(_message(), sender=SENDER, recipients=RECIPIENTS)

    [received] = relay.messages
    assert received.sender == SENDER
    assert received.recipients == tuple(RECIPIENTS)
    assert received.message_id == "<month-end.2026-10.3f2a9c1b.0@example.com>"
    assert received.subject == "[returnbridge] Month-end 2026-10"
    msg = received.message
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and plain.get_content().strip() == "October"
    assert html is not None and 'src="cid:money-by-method@returnbridge"' in html.get_content()
    [image] = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<money-by-method@returnbridge>"
    assert image.get_content_disposition() == "inline"
    assert image.get_filename() == "money-by-method.png"
    assert image.get_content() == PNG
    related = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1 and html in list(related[0].iter_parts())


def test_the_stand_in_writes_each_message_as_an_eml_file(tmp_path: Path) -> None:
    with MailStandIn(out_dir=tmp_path / "mail") as standin:
        sender = SmtpSender(standin.settings())
        sender.send(_message(), sender=SENDER, recipients=RECIPIENTS[:1])
        sender.send(_message("<m.1@example.com>"), sender=SENDER, recipients=RECIPIENTS[:1])
    files = sorted(p.name for p in (tmp_path / "mail").iterdir())
    assert files == [
        "001-returnbridge-Month-end-2026-10.eml",
        "002-returnbridge-Month-end-2026-10.eml",
    ]
    assert (tmp_path / "mail" / files[0]).read_bytes() == standin.messages[0].raw


def test_a_login_that_the_server_accepts(auth_server: MailStandIn) -> None:
    SmtpSender(auth_server.settings()).send(_message(), sender=SENDER, recipients=RECIPIENTS)
    [received] = auth_server.messages
    assert received.login == "reports"
    assert auth_server.logins == [("reports", True)]


def test_several_senders_at_once_each_deliver_their_message(relay: MailStandIn) -> None:
    sender = SmtpSender(relay.settings())
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            sender.send(_message(f"<m.{n}@example.com>"), sender=SENDER, recipients=RECIPIENTS)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(m.message_id for m in relay.messages) == [
        f"<m.{n}@example.com>" for n in range(5)
    ]


# --------------------------------------------------------------------------- refused for good


def test_a_wrong_password_is_refused_clearly_and_never_shows_the_password(
    auth_server: MailStandIn,
) -> None:
    wrong = "not-" + PASSWORD
    sender = SmtpSender(auth_server.settings(password=SecretStr(wrong)))
    with pytest.raises(MailRefused) as caught:
        sender.send(_message(), sender=SENDER, recipients=RECIPIENTS)

    exc = caught.value
    assert isinstance(exc, MailAuthRefused) and isinstance(exc, AuthError | RejectedError)
    assert (exc.stage, exc.code) == ("login", 535)
    text = str(exc)
    assert f"127.0.0.1:{auth_server.port}" in text
    assert "login of user 'reports' was refused" in text
    assert "535" in text and "RETURNBRIDGE_MAIL__PASSWORD" in text
    assert wrong not in text and PASSWORD not in text
    _no_secret(exc)
    assert exc.__cause__ is None and exc.__suppress_context__  # no smtplib traceback behind it
    assert auth_server.messages == []


def test_no_login_where_the_server_wants_one(auth_server: MailStandIn) -> None:
    sender = SmtpSender(auth_server.settings(user=None, password=None))
    with pytest.raises(MailAuthRefused, match="wants a login") as caught:
        sender.send(_message(), sender=SENDER, recipients=RECIPIENTS)
    assert caught.value.code == 530
    assert "RETURNBRIDGE_MAIL__USER" in str(caught.value)


def test_a_login_where_the_server_offers_none(relay: MailStandIn) -> None:
    sender = SmtpSender(relay.settings(user="reports", password=SecretStr(PASSWORD)))
    with pytest.raises(MailAuthRefused, match="offers no login") as caught:
        sender.send(_message(), sender=SENDER, recipients=RECIPIENTS)
    assert caught.value.stage == "login"
    _no_secret(caught.value)


def test_a_permanent_refusal_of_the_message(relay: MailStandIn) -> None:
    relay.fail_next(1, code=554, text="5.6.0 Message rejected as spam")
    with pytest.raises(MailRefused) as caught:
        SmtpSender(relay.settings()).send(_message(), sender=SENDER, recipients=RECIPIENTS)
    exc = caught.value
    assert not isinstance(exc, MailUnavailable)
    assert (exc.stage, exc.code) == ("DATA", 554)
    assert "refused at DATA" in str(exc) and "5.6.0 Message rejected as spam" in str(exc)
    assert relay.messages == []


def test_some_recipients_refused_is_a_half_sent_message_that_says_so(relay: MailStandIn) -> None:
    relay.refuse("ops@example.com")
    with pytest.raises(MailRefused) as caught:
        SmtpSender(relay.settings()).send(_message(), sender=SENDER, recipients=RECIPIENTS)
    exc = caught.value
    assert exc.partial
    assert exc.accepted == ("finance@example.com",)
    assert exc.refused == {"ops@example.com": (550, "5.1.1 No such user")}
    assert "delivered to finance@example.com but refused for ops@example.com" in str(exc)
    [received] = relay.messages
    assert received.recipients == ("finance@example.com",)


def test_every_recipient_refused(relay: MailStandIn) -> None:
    for address in RECIPIENTS:
        relay.refuse(address)
    with pytest.raises(MailRefused, match="every recipient was refused") as caught:
        SmtpSender(relay.settings()).send(_message(), sender=SENDER, recipients=RECIPIENTS)
    assert not caught.value.partial
    assert set(caught.value.refused) == set(RECIPIENTS)
    assert relay.messages == []


def test_starttls_wanted_but_not_offered(relay: MailStandIn) -> None:
    with pytest.raises(MailRefused, match="does not offer STARTTLS") as caught:
        SmtpSender(relay.settings(security="starttls")).send(
            _message(), sender=SENDER, recipients=RECIPIENTS
        )
    assert caught.value.stage == "STARTTLS"
    assert "RETURNBRIDGE_MAIL__SECURITY" in str(caught.value)
    assert relay.messages == []


# --------------------------------------------------------------------------- try again later


def test_a_server_that_is_down(tmp_path: Path) -> None:
    port = free_port()
    settings = MailSettings(host="127.0.0.1", port=port, security="none", timeout_seconds=5)
    with pytest.raises(MailUnavailable) as caught:
        SmtpSender(settings).send(_message(), sender=SENDER, recipients=RECIPIENTS)
    exc = caught.value
    assert isinstance(exc, TransientError) and isinstance(exc, MailError)
    assert exc.stage == "connect"
    assert str(exc).startswith(f"e-mail via 127.0.0.1:{port}: connection refused")


def test_a_temporary_refusal_at_data_then_success(relay: MailStandIn) -> None:
    relay.fail_next(1)  # 451 4.3.0 Try again later
    sender = SmtpSender(relay.settings())
    with pytest.raises(MailUnavailable) as caught:
        sender.send(_message(), sender=SENDER, recipients=RECIPIENTS)
    exc = caught.value
    assert (exc.stage, exc.code) == ("DATA", 451)
    assert f"127.0.0.1:{relay.port}" in str(exc) and "451 4.3.0 Try again later" in str(exc)
    assert relay.messages == []

    sender.send(_message(), sender=SENDER, recipients=RECIPIENTS)
    assert len(relay.messages) == 1


def test_every_recipient_deferred_is_temporary(relay: MailStandIn) -> None:
    for address in RECIPIENTS:
        relay.refuse(address, code=450, text="4.2.0 Greylisted, try again")
    with pytest.raises(MailUnavailable, match="every recipient was deferred"):
        SmtpSender(relay.settings()).send(_message(), sender=SENDER, recipients=RECIPIENTS)


def _listener(behaviour: str, done: threading.Event) -> tuple[socket.socket, threading.Thread]:
    """A TCP listener on loopback that never greets (`silent`: it holds the connection until
    `done`) or hangs up at once (`hangup`)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            if behaviour == "silent":
                done.wait(timeout=30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    ("behaviour", "match"),
    [
        ("silent", r"no answer within 0\.3s during connect"),
        ("hangup", "the server closed the connection during connect"),
    ],
)
def test_a_server_that_never_answers_or_hangs_up(behaviour: str, match: str) -> None:
    done = threading.Event()
    server, thread = _listener(behaviour, done)
    try:
        port = server.getsockname()[1]
        settings = MailSettings(host="127.0.0.1", port=port, security="none", timeout_seconds=0.3)
        with pytest.raises(MailUnavailable, match=match):
            SmtpSender(settings).send(_message(), sender=SENDER, recipients=RECIPIENTS)
    finally:
        done.set()
        server.close()
        thread.join(timeout=5)


def test_a_host_that_does_not_resolve() -> None:
    settings = MailSettings(host="smtp.invalid", port=587, timeout_seconds=5)
    with pytest.raises(MailUnavailable, match=r"cannot resolve the host name 'smtp\.invalid'"):
        SmtpSender(settings).send(_message(), sender=SENDER, recipients=RECIPIENTS)


# --------------------------------------------------------------------------- TLS


def _certificate(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert file, key file, cert PEM)."""
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, pem


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the server's self-signed certificate)."""
    cert_file, key_file, pem = _certificate(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=pem.decode("ascii"))
    return server, client


def test_starttls_then_login(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    with MailStandIn(
        user="reports", password=PASSWORD, tls_context=server_ctx, require_starttls=True
    ) as standin:
        settings = standin.settings()
        assert settings.security == "starttls"
        SmtpSender(settings, ssl_context=client_ctx).send(
            _message(), sender=SENDER, recipients=RECIPIENTS
        )
        [received] = standin.messages
        assert received.login == "reports"


def test_implicit_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    with MailStandIn(ssl_context=server_ctx) as standin:
        settings = standin.settings()
        assert settings.security == "ssl"
        SmtpSender(settings, ssl_context=client_ctx).send(
            _message(), sender=SENDER, recipients=RECIPIENTS
        )
        assert len(standin.messages) == 1


def test_a_certificate_we_do_not_trust(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, _ = tls
    with MailStandIn(tls_context=server_ctx) as standin:
        sender = SmtpSender(standin.settings())  # the default context: the system's CAs
        with pytest.raises(MailRefused, match="certificate is not trusted") as caught:
            sender.send(_message(), sender=SENDER, recipients=RECIPIENTS)
        assert caught.value.stage == "STARTTLS"
        assert standin.messages == []


def test_ssl_against_a_plain_port(relay: MailStandIn) -> None:
    with pytest.raises(MailError) as caught:
        SmtpSender(relay.settings(security="ssl")).send(
            _message(), sender=SENDER, recipients=RECIPIENTS
        )
    assert caught.value.stage == "connect"
    assert f"127.0.0.1:{relay.port}" in str(caught.value)


# --------------------------------------------------------------------------- settings


def test_settings_defaults_mean_e_mail_is_off() -> None:
    settings = MailSettings()
    assert settings.host is None and not settings.active
    assert (settings.port, settings.security, settings.sender) == (
        587,
        "starttls",
        "returnbridge@localhost",
    )
    with pytest.raises(ValueError, match="RETURNBRIDGE_MAIL__HOST is not set"):
        SmtpSender(settings)
    assert all(f.description for f in MailSettings.model_fields.values())


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("finance@example.com, ops@example.com", ["finance@example.com", "ops@example.com"]),
        ("finance@example.com;ops@example.com ", ["finance@example.com", "ops@example.com"]),
        ('["finance@example.com", "ops@example.com"]', ["finance@example.com", "ops@example.com"]),
        (["finance@example.com", "Finance@Example.com"], ["finance@example.com"]),
        ("", []),
    ],
)
def test_recipients_from_a_list_or_a_string(given: object, expected: list[str]) -> None:
    assert MonthEndSettings.model_validate({"recipients": given}).recipients == expected


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ("finance@example.com, ops", "'ops' does not look like an e-mail address"),
        (["Finance <finance@example.com>"], "does not look like"),
        (["bücher@example.com"], "not ASCII"),
    ],
)
def test_recipients_must_be_bare_addresses(given: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        MonthEndSettings.model_validate({"recipients": given})


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"sender": "returnbridge"}, "sender 'returnbridge' does not look like"),
        ({"port": 0}, "greater than or equal to 1"),
        ({"port": 70000}, "less than or equal to 65535"),
        ({"security": "tls"}, "'starttls', 'ssl' or 'none'"),
        ({"timeout_seconds": 0}, "greater than 0"),
        ({"user": "reports"}, "without a password"),
        ({"password": "x"}, "without a user"),
        ({"hostname": "smtp.example.com"}, "Extra inputs are not permitted"),
    ],
)
def test_settings_refuse_what_would_fail_at_month_end(
    values: dict[str, object], match: str
) -> None:
    with pytest.raises(ValidationError, match=match):
        MailSettings.model_validate(values)


def test_settings_from_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `Settings` reads them: every value a string, the recipients comma-separated."""

    for name, value in {
        "HOST": "smtp.example.com",
        "PORT": "465",
        "SECURITY": "ssl",
        "USER": "reports",
        "PASSWORD": PASSWORD,
        "SENDER": "returnbridge@example.com",
    }.items():
        monkeypatch.setenv(f"RETURNBRIDGE_MAIL__{name}", value)
    monkeypatch.setenv("RETURNBRIDGE_MONTHEND__RECIPIENTS", "finance@example.com,ops@example.com")
    settings = Settings()
    mail = settings.mail
    assert (mail.host, mail.port, mail.security) == ("smtp.example.com", 465, "ssl")
    assert settings.monthend.recipients == ["finance@example.com", "ops@example.com"]
    assert mail.password is not None and mail.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(mail) and PASSWORD not in str(mail.model_dump())
    assert mail.active and mail.address == "smtp.example.com:465"

    monkeypatch.setenv("RETURNBRIDGE_MAIL__HOST", "")
    assert not Settings().mail.active


def test_build_message_feeds_smtp_sender_with_a_stable_id(relay: MailStandIn) -> None:
    message_id = message_id_for("month-end:2026-10:3f2a9c1b", 0, "example.com")
    SmtpSender(relay.settings()).send(_message(message_id), sender=SENDER, recipients=RECIPIENTS)
    assert relay.messages[0].message_id == message_id
    assert isinstance(relay.messages[0].message, EmailMessage)


def test_a_server_that_wants_starttls_first_says_so_not_that_it_wants_a_login(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """ "530 Must issue a STARTTLS command first" with security 'none': the fix is the
    security setting, not a user and password."""
    server_ctx, _ = tls
    with MailStandIn(tls_context=server_ctx, require_starttls=True) as standin:
        plain = standin.settings(security="none")
        with pytest.raises(MailAuthRefused, match="wants TLS first") as caught:
            SmtpSender(plain).send(_message(), sender=SENDER, recipients=RECIPIENTS)
        assert standin.messages == []
    text = str(caught.value)
    assert caught.value.code == 530 and "STARTTLS" in text
    assert "RETURNBRIDGE_MAIL__SECURITY" in text and "RETURNBRIDGE_MAIL__USER" not in text
