"""The errors the SMTP sender raises, as subclasses of the shared kinds.

They subclass the kinds of `returnbridge.connectors.errors` the way Slack's do
(docs/architecture.md), so a caller may decide on the kind while the message says that e-mail
failed. The sender never retries by itself: the message is in the outbox, which keeps it for
the next run in every case.

- `MailUnavailable` (`TransientError`): the server could not be reached (refused, reset, timed
  out, name not resolved), hung up, or answered 4xx: try again later;
- `MailRefused` (`RejectedError`): the server said no for good (5xx on MAIL, RCPT or DATA, TLS
  required but not offered, a certificate we do not trust), or refused some recipients while
  accepting the others (a half-sent message: `refused` and `accepted` say who is who);
  `MailAuthRefused` (also `AuthError`) when it refused the login (535, 534, 530).

Every message names `host:port`, what failed and the server's code and reply; never a password.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from returnbridge.connectors.errors import ApiError, AuthError, RejectedError, TransientError


class MailError(ApiError):
    """Base of every error the SMTP sender raises.

    `address` is `host:port`, `stage` what was being done (connect, STARTTLS, login, MAIL FROM,
    RCPT TO, DATA, ...), `code` and `reply` the server's answer when there was one."""

    def __init__(
        self,
        what: str,
        *,
        address: str,
        stage: str,
        code: int | None = None,
        reply: str | None = None,
        hint: str | None = None,
    ) -> None:
        answer = ""
        if code is not None:
            answer = f" (server answered {code}{f' {reply}' if reply else ''})"
        elif reply:
            answer = f" ({reply})"
        super().__init__(f"e-mail via {address}: {what}{answer}{f'; {hint}' if hint else ''}")
        self.address = address
        self.stage = stage
        self.code = code
        self.reply = reply


class MailUnavailable(MailError, TransientError):
    """The server could not be reached, hung up, or answered 4xx: nothing was delivered; keep
    the message and send it next run."""


class MailRefused(MailError, RejectedError):
    """The server refused the message for good, or refused some of its recipients: a person
    must look (the settings, the recipient list); retrying will not help until then.

    `refused` maps each refused recipient to the server's (code, reply); `accepted` are the
    recipients the message did reach when only some were refused (empty otherwise)."""

    def __init__(
        self,
        what: str,
        *,
        address: str,
        stage: str,
        code: int | None = None,
        reply: str | None = None,
        hint: str | None = None,
        refused: Mapping[str, tuple[int, str]] | None = None,
        accepted: Sequence[str] = (),
    ) -> None:
        super().__init__(what, address=address, stage=stage, code=code, reply=reply, hint=hint)
        self.refused = dict(refused or {})
        self.accepted = tuple(accepted)

    @property
    def partial(self) -> bool:
        """Whether the message reached some recipients (and not the `refused` ones)."""
        return bool(self.accepted)


class MailAuthRefused(MailRefused, AuthError):
    """The server refused our login (535, 534, 530) or offers no way to log in: fix
    RETURNBRIDGE_MAIL__USER / RETURNBRIDGE_MAIL__PASSWORD (or the server's side)."""
