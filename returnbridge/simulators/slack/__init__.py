"""A Slack Web API stand-in for the digests: `create_slack_app` (the ASGI app) and `SlackStandIn`
(served on a free loopback port for tests and the demo). See `app.py` for what it answers."""

from returnbridge.simulators.slack.app import create_slack_app, run
from returnbridge.simulators.slack.standin import SlackStandIn

__all__ = ["SlackStandIn", "create_slack_app", "run"]
