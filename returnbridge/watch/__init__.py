"""The watchdog (docs/operating-guide.md#watchdog-alerts): checks the integration's health and
posts each alert once per incident, with a recovery message, to the engineering Slack channel.

- `checks.py`: the checks, pure functions of plain inputs (`WatchInputs`) to `Observation`s;
- `messages.py`: the Slack text and Block Kit of an alert and of a recovery, pure;
- `probes.py`: the cheap authenticated reads that tell whether Centra's and Reveni's credentials
  work;
- `runner.py`: gathers the inputs from the ledger and the APIs, keeps the incidents in the
  ledger (`returnbridge.ledger.incidents`) and posts what is owed; `open_watchdog` wires it from
  the settings;
- `settings.py`: `WatchSettings` (`RETURNBRIDGE_WATCH__*`).

Nothing is imported here, so that `returnbridge.settings` can import `watch.settings` without
loading the runner (which imports the settings back).
"""
