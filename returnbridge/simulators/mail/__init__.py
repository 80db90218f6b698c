"""An SMTP stand-in for the month-end report's e-mail: `MailStandIn`, a real SMTP server
(aiosmtpd) on a free loopback port that keeps every message it accepts, for tests and the demo.
See `standin.py` for what it can be told to do (require a login, defer DATA, refuse a
recipient, speak TLS)."""

from returnbridge.simulators.mail.standin import MailStandIn, ReceivedMail

__all__ = ["MailStandIn", "ReceivedMail"]
