"""`MailStandIn`: a real SMTP server (aiosmtpd, in a background thread) on 127.0.0.1 and a free
port, keeping every message it accepts, so that the e-mail path is tested over the real
pieces: smtplib on one side, an SMTP server on the other, the message parsed back with `email`.

It can be told to:

- require a login (`user`, `password`: AUTH PLAIN/LOGIN, allowed without TLS on loopback);
- defer DATA `n` times (`fail_next`, 451 by default: a server that is busy) or refuse a
  recipient (`refuse`, 550 by default: an address that does not exist);
- speak STARTTLS (`tls_context`, and `require_starttls`) or TLS from the first byte
  (`ssl_context`), with the certificate a test made;
- write every message to `out_dir` as `NNN-<subject>.eml` (the demo: open it in a mail client).

`stop()` and `start()` again serve the same port, so a test can take the server down and bring
it back.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from returnbridge.connectors.email.settings import MailSettings
from returnbridge.simulators.server import free_port

_HOST: Final = "127.0.0.1"
_START_TRIES: Final = 5  # a free port taken by someone else between the probe and the bind
_SLUG: Final = re.compile(r"[^A-Za-z0-9._-]+")


def _not_login_data_deprecation(record: logging.LogRecord) -> bool:
    """aiosmtpd 1.4 logs a deprecation warning of its own `Session.login_data` on every
    successful login, whoever asked for it; nothing here reads it."""
    return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_not_login_data_deprecation)


@dataclass(frozen=True)
class ReceivedMail:
    """One message the stand-in accepted: the SMTP envelope, the bytes as received, the message
    parsed back (`email.policy.default`), and the user that logged in to send it (if any)."""

    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    login: str | None = None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"] or "").strip()


class MailStandIn:
    """An SMTP server on 127.0.0.1 for the duration of a `with` block (or `start()`/`stop()`).

    `host` and `port` are what `MailSettings` take (`settings()` builds them); `messages` are
    the messages accepted so far, oldest first."""

    def __init__(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        out_dir: Path | None = None,
        port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if (user is None) != (password is None):
            raise ValueError("give the stand-in both a user and a password, or neither")
        if tls_context is not None and ssl_context is not None:
            raise ValueError("STARTTLS (tls_context) or TLS from the start (ssl_context), not both")
        self.user = user
        self.password = password
        self.out_dir = out_dir
        self._port = port
        self._tls_context = tls_context
        self._require_starttls = require_starttls
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._failures: list[str] = []  # DATA replies still to give instead of accepting
        self._refused: dict[str, str] = {}  # lower-cased recipient -> RCPT reply
        self._logins: list[tuple[str, bool]] = []
        self._controller: Controller | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MailStandIn:
        """Start serving (on the port of the last start, or a free one)."""
        if self._controller is not None:
            raise RuntimeError("the SMTP stand-in is already running")
        last: OSError | None = None
        for _ in range(_START_TRIES if self._port is None else 1):
            port = self._port if self._port is not None else free_port(_HOST)
            controller = self._new_controller(port)
            try:
                controller.start()
            except OSError as exc:  # the port was taken after all
                last = exc
                controller.stop(no_assert=True)
                continue
            self._controller = controller
            self._port = port
            if self.out_dir is not None:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            return self
        raise RuntimeError(f"the SMTP stand-in could not bind a port on {_HOST}: {last}")

    def stop(self) -> None:
        """Stop serving: connections to `port` are refused until `start()` again."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> MailStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def _new_controller(self, port: int) -> Controller:
        options: dict[str, Any] = {
            "hostname": _HOST,
            "port": port,
            "server_hostname": "localhost",  # its greeting; no DNS lookup of our own name
            "ready_timeout": 10.0,
            "ssl_context": self._ssl_context,
            "tls_context": self._tls_context,
            "require_starttls": self._require_starttls,
        }
        if self.user is not None:
            # AUTH offered without TLS (loopback); "530 authentication required" is answered by
            # `_Handler.handle_MAIL`, not by aiosmtpd's `auth_required`, which warns about the
            # missing TLS on every connection.
            options.update(authenticator=self._authenticate, auth_require_tls=False)
        return Controller(_Handler(self), **options)

    # ------------------------------------------------------------------ where it listens

    @property
    def host(self) -> str:
        return _HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the SMTP stand-in has not been started (use it in a `with` block)")
        return self._port

    def settings(self, **overrides: Any) -> MailSettings:
        """`MailSettings` pointing at this stand-in (its login, if it wants one; STARTTLS or
        SSL if it speaks it: pass the client's `ssl_context` to `SmtpSender`); `overrides` win."""
        security = "none"
        if self._tls_context is not None:
            security = "starttls"
        elif self._ssl_context is not None:
            security = "ssl"
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": security,
            "user": self.user,
            "password": None if self.password is None else SecretStr(self.password),
            "timeout_seconds": 10.0,
            **overrides,
        }
        return MailSettings.model_validate(values)

    # ------------------------------------------------------------------ what it received

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every message accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def logins(self) -> list[tuple[str, bool]]:
        """Every login attempt so far: (user, whether it was accepted)."""
        with self._lock:
            return list(self._logins)

    def reset(self) -> None:
        """Forget the messages and logins, and drop the failures still to give."""
        with self._lock:
            self._messages.clear()
            self._logins.clear()
            self._failures.clear()
            self._refused.clear()

    # ------------------------------------------------------------------ faults

    def fail_next(self, n: int = 1, code: int = 451, text: str = "4.3.0 Try again later") -> None:
        """Answer the next `n` DATA commands with `code text` instead of accepting them (451:
        a temporary failure; a 5xx code: a permanent one)."""
        if not 400 <= code < 600:
            raise ValueError(f"a failure is a 4xx or 5xx code, not {code}")
        with self._lock:
            self._failures.extend([f"{code} {text}"] * n)

    def refuse(self, address: str, code: int = 550, text: str = "5.1.1 No such user") -> None:
        """Answer RCPT TO `address` with `code text` from now on."""
        with self._lock:
            self._refused[address.strip().lower()] = f"{code} {text}"

    # ------------------------------------------------------------------ the handler's side

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = login == self.user and auth_data.password.decode("utf-8", "replace") == self.password
        with self._lock:
            self._logins.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    def _rcpt_reply(self, address: str) -> str | None:
        with self._lock:
            return self._refused.get(address.strip().lower())

    def _receive(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            login = session.auth_data if isinstance(session.auth_data, str) else None
            received = ReceivedMail(
                sender=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                raw=raw,
                message=parsed,
                login=login,
            )
            self._messages.append(received)
            number = len(self._messages)
        if self.out_dir is not None:
            slug = _SLUG.sub("-", received.subject).strip("-.")[:60] or "message"
            (self.out_dir / f"{number:03d}-{slug}.eml").write_bytes(raw)
        return "250 2.0.0 OK: queued"


class _Handler:
    """aiosmtpd's hooks, handed to the stand-in (which holds the state and the lock)."""

    def __init__(self, standin: MailStandIn) -> None:
        self._standin = standin

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._standin.user is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._standin._rcpt_reply(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self._standin._receive(session, envelope)
