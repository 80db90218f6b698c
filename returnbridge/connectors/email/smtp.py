"""`SmtpSender`: hands one finished message to the SMTP server with the standard library's
smtplib, or raises one of the errors of errors.py (`MailUnavailable`: try again later;
`MailRefused`: a person must look). Nothing else escapes `send` as an smtplib or socket error,
so a caller never shows a traceback for a server that is down or refuses the login.

One connection per `send`: the month-end report is a handful of messages a month, so keeping a
connection open would only add a state that can go stale. The sender does not retry; the
outbox (`returnbridge.monthend.mailing`) keeps the message and sends it again next run.

What a retry can and cannot double: every failure before the server's answer to the end of DATA
means the server took nothing, so the retry is the first delivery. If the connection is lost
after the message was sent but before the server's answer, the server may have kept it; the
retry then delivers it again, with the same Message-ID, which mail clients show as one message.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from collections.abc import Sequence
from typing import Final

from returnbridge.connectors.email.errors import (
    MailAuthRefused,
    MailError,
    MailRefused,
    MailUnavailable,
)
from returnbridge.connectors.email.settings import MailSettings

log = logging.getLogger(__name__)

# Replies that say the login is missing or refused: 530 authentication required (also answered
# to MAIL FROM by a server that wants a login first), 534 mechanism too weak, 535 credentials
# invalid. 454 (temporary authentication failure) is a 4xx: unavailable, not refused.
_AUTH_CODES: Final = frozenset({530, 534, 535})
_CREDENTIALS_HINT: Final = "check RETURNBRIDGE_MAIL__USER and RETURNBRIDGE_MAIL__PASSWORD"
_SECURITY_HINT: Final = (
    "check RETURNBRIDGE_MAIL__SECURITY and RETURNBRIDGE_MAIL__PORT (ssl: usually 465;"
    " starttls: usually 587)"
)
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})


class SmtpSender:
    """Sends finished messages through the SMTP server of `settings` (`security`: STARTTLS,
    implicit TLS or none; a login when `settings.user` is set).

    `ssl_context` replaces the default context (`ssl.create_default_context()`, which verifies
    the server's certificate and host name): tests pass one that trusts a self-signed
    certificate; a company CA is better added to the system's trust store."""

    def __init__(
        self, settings: MailSettings, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        if settings.host is None:
            raise ValueError("RETURNBRIDGE_MAIL__HOST is not set: no SMTP server to send e-mail to")
        self.settings = settings
        self.host: str = settings.host
        self.port = settings.port
        self._ssl_context = ssl_context
        clear_login = settings.security == "none" and settings.user is not None
        if clear_login and self.host.lower() not in _LOOPBACK:
            log.warning(
                "e-mail via %s: security is 'none', so the SMTP password crosses the network"
                " unencrypted; use starttls or ssl",
                self.address,
            )

    @property
    def address(self) -> str:
        """`host:port`, as every error message names it."""
        return f"{self.host}:{self.port}"

    def send(self, message: bytes, *, sender: str, recipients: Sequence[str]) -> None:
        """Deliver `message` (a whole RFC 5322 message, CRLF line ends) from the envelope
        `sender` to every one of `recipients`, or raise MailUnavailable / MailRefused.

        A server that accepts some recipients and refuses others has delivered the message to
        the former: that is raised as MailRefused with `accepted` and `refused` set, so a
        half-sent message is never taken for a sent one."""
        wanted = list(dict.fromkeys(recipients))
        if not wanted:
            raise ValueError("no recipients to send the message to")
        stage = "connect"
        client: smtplib.SMTP | None = None
        try:
            client = self._connect()
            stage = "EHLO"
            client.ehlo_or_helo_if_needed()
            if self.settings.security == "starttls":
                stage = "STARTTLS"
                client.starttls(context=self._context())
                client.ehlo()  # the capabilities offered over TLS (AUTH often only there)
            if self.settings.user is not None and self.settings.password is not None:
                stage = "login"
                client.login(self.settings.user, self.settings.password.get_secret_value())
            stage = "sending (MAIL FROM, RCPT TO, DATA)"
            refused = client.sendmail(sender, wanted, message)
        except Exception as exc:
            raise self._classify(exc, stage) from None
        finally:
            if client is not None:
                _close(client)
        if refused:
            raise self._partly_refused(refused, wanted)
        log.info("e-mail via %s: sent to %d recipient(s)", self.address, len(wanted))

    # ------------------------------------------------------------------ internals

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        timeout = self.settings.timeout_seconds
        if self.settings.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=timeout, context=self._context())
        return smtplib.SMTP(self.host, self.port, timeout=timeout)

    def _scrub(self, text: str) -> str:
        """`text` without the password, should a server ever echo it back."""
        password = self.settings.password
        secret = "" if password is None else password.get_secret_value()
        return text.replace(secret, "***") if secret else text

    def _reply(self, raw: bytes | str) -> str:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return self._scrub(" ".join(text.split()))

    def _partly_refused(
        self, refused: dict[str, tuple[int, bytes]], wanted: Sequence[str]
    ) -> MailRefused:
        answers = {rcpt: (int(code), self._reply(reply)) for rcpt, (code, reply) in refused.items()}
        accepted = [rcpt for rcpt in wanted if rcpt not in answers]
        listed = "; ".join(f"{rcpt}: {code} {reply}" for rcpt, (code, reply) in answers.items())
        return MailRefused(
            f"the message was delivered to {', '.join(accepted)} but refused for"
            f" {', '.join(answers)} ({listed})",
            address=self.address,
            stage="RCPT TO",
            hint="check those addresses in RETURNBRIDGE_MAIL__RECIPIENTS",
            refused=answers,
            accepted=accepted,
        )

    def _classify(self, exc: Exception, stage: str) -> MailError:
        """The MailError that says what `exc`, raised during `stage`, means for the caller."""
        address = self.address
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            answers = {
                rcpt: (int(code), self._reply(reply))
                for rcpt, (code, reply) in exc.recipients.items()
            }
            listed = "; ".join(f"{rcpt}: {code} {reply}" for rcpt, (code, reply) in answers.items())
            if answers and all(400 <= code < 500 for code, _ in answers.values()):
                return MailUnavailable(
                    f"every recipient was deferred at RCPT TO ({listed})",
                    address=address,
                    stage="RCPT TO",
                )
            return MailRefused(
                f"every recipient was refused at RCPT TO ({listed})",
                address=address,
                stage="RCPT TO",
                hint="check RETURNBRIDGE_MAIL__RECIPIENTS",
                refused=answers,
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            # smtplib reports a reply that timed out as a disconnection; say what it was.
            if isinstance(exc.__context__, TimeoutError):
                return self._classify(exc.__context__, stage)
            return MailUnavailable(
                f"the server closed the connection during {stage}",
                address=address,
                stage=stage,
                reply=self._scrub(str(exc)) or None,
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._by_code(exc, stage)
        if isinstance(exc, smtplib.SMTPException):  # SMTPNotSupportedError and the like
            return self._not_offered(exc, stage)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return MailRefused(
                f"the server's TLS certificate is not trusted during {stage}",
                address=address,
                stage=stage,
                reply=exc.verify_message or self._scrub(str(exc)),
                hint="is RETURNBRIDGE_MAIL__HOST the name on the server's certificate?",
            )
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return MailUnavailable(
                f"the server closed the TLS connection during {stage}",
                address=address,
                stage=stage,
                reply=self._scrub(str(exc)),
            )
        if isinstance(exc, ssl.SSLError):
            return MailRefused(
                f"TLS failed during {stage}",
                address=address,
                stage=stage,
                reply=self._scrub(str(exc)),
                hint=_SECURITY_HINT,
            )
        if isinstance(exc, socket.gaierror):
            return MailUnavailable(
                f"cannot resolve the host name {self.host!r}",
                address=address,
                stage=stage,
                reply=str(exc),
                hint="check RETURNBRIDGE_MAIL__HOST",
            )
        if isinstance(exc, TimeoutError):
            return MailUnavailable(
                f"no answer within {self.settings.timeout_seconds:g}s during {stage}",
                address=address,
                stage=stage,
            )
        if isinstance(exc, ConnectionRefusedError):
            return MailUnavailable(
                "connection refused (is the SMTP server running, and is this its port?)",
                address=address,
                stage=stage,
            )
        if isinstance(exc, OSError):
            return MailUnavailable(
                f"network error during {stage}",
                address=address,
                stage=stage,
                reply=f"{type(exc).__name__}: {self._scrub(str(exc))}",
            )
        return MailRefused(
            f"unexpected error during {stage}",
            address=address,
            stage=stage,
            reply=f"{type(exc).__name__}: {self._scrub(str(exc))}",
        )

    def _by_code(self, exc: smtplib.SMTPResponseException, stage: str) -> MailError:
        """A reply the server gave: 4xx is temporary, 5xx (and anything else) is not."""
        code = int(exc.smtp_code)
        reply = self._reply(exc.smtp_error)
        if isinstance(exc, smtplib.SMTPSenderRefused):
            stage, what = "MAIL FROM", f"the sender {exc.sender} was refused at MAIL FROM"
        elif isinstance(exc, smtplib.SMTPDataError):
            stage, what = "DATA", "the message was refused at DATA"
        elif isinstance(exc, smtplib.SMTPConnectError):
            stage, what = "connect", "the server refused the connection in its greeting"
        elif isinstance(exc, smtplib.SMTPHeloError):
            stage, what = "EHLO", "the server refused our EHLO/HELO"
        elif isinstance(exc, smtplib.SMTPAuthenticationError):
            stage, what = "login", f"the login of user {self.settings.user!r} was refused"
        else:
            what = f"the server refused {stage}"
        if 400 <= code < 500:
            return MailUnavailable(
                f"{what} for now",
                address=self.address,
                stage=stage,
                code=code,
                reply=reply,
            )
        lowered = f" {reply.lower()} "
        wants_tls = "starttls" in lowered or " tls " in lowered or "5.7.10" in lowered
        if code == 530 and wants_tls and self.settings.security == "none":
            # "530 Must issue a STARTTLS command first": TLS is wanted, not a login
            return MailAuthRefused(
                f"{what}: the server wants TLS first",
                address=self.address,
                stage=stage,
                code=code,
                reply=reply,
                hint=_SECURITY_HINT,
            )
        if code in _AUTH_CODES or isinstance(exc, smtplib.SMTPAuthenticationError):
            if self.settings.user is None:
                what = f"{what}: the server wants a login"
                hint = "set RETURNBRIDGE_MAIL__USER and RETURNBRIDGE_MAIL__PASSWORD"
            else:
                hint = _CREDENTIALS_HINT
            return MailAuthRefused(
                what, address=self.address, stage=stage, code=code, reply=reply, hint=hint
            )
        return MailRefused(what, address=self.address, stage=stage, code=code, reply=reply)

    def _not_offered(self, exc: smtplib.SMTPException, stage: str) -> MailError:
        """smtplib's own refusals: something we need that the server does not offer."""
        reply = self._scrub(str(exc))
        if stage == "STARTTLS":
            return MailRefused(
                "the server does not offer STARTTLS, and security is 'starttls'",
                address=self.address,
                stage=stage,
                reply=reply,
                hint=_SECURITY_HINT,
            )
        if stage == "login":
            return MailAuthRefused(
                "the server offers no login we can use (SMTP AUTH with PLAIN, LOGIN or CRAM-MD5)",
                address=self.address,
                stage=stage,
                reply=reply,
                hint="unset RETURNBRIDGE_MAIL__USER for a relay without login, or check"
                " RETURNBRIDGE_MAIL__SECURITY (many servers offer AUTH only over TLS)",
            )
        return MailRefused(
            f"the server cannot do what {stage} needs",
            address=self.address,
            stage=stage,
            reply=reply,
        )


def _close(client: smtplib.SMTP) -> None:
    """QUIT politely, then close; a server that is gone by then changes nothing."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        client.close()
