"""`returnbridge sync --every N` keeps going through temporary errors: it logs each failure,
backs off (doubling, capped) and runs again until interrupted; a single `sync` still fails."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from returnbridge import cli_ops
from returnbridge.cli import app


class _Report:
    def as_dict(self) -> dict[str, Any]:
        return {"returns_seen": 1}


def test_every_backs_off_after_failures_and_resets_after_a_good_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcomes: list[BaseException | None] = [
        ConnectionError("Reveni unreachable"),
        ConnectionError("Reveni unreachable"),
        None,
        TimeoutError("Centra slow"),
        None,
    ]
    runs: list[int] = []

    async def fake_run(settings: Any) -> _Report:
        runs.append(1)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return _Report()

    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        if not outcomes:
            raise KeyboardInterrupt  # the operator's Ctrl-C (or SIGTERM) between runs

    monkeypatch.setattr(cli_ops, "_run_sync", fake_run)
    monkeypatch.setattr(cli_ops, "_print_report", lambda report, as_json: None)
    monkeypatch.setattr(cli_ops.time, "sleep", fake_sleep)
    result = CliRunner().invoke(app, ["sync", "--every", "2"])
    assert len(runs) == 5
    start = cli_ops.EVERY_BACKOFF_START_SECONDS
    assert waits == [start, start * 2, 2, start, 2]
    assert "sync failed (2 in a row), next try in" in result.output
    assert "ConnectionError: Reveni unreachable" in result.output


def test_the_backoff_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    failures = 12

    async def failing(settings: Any) -> _Report:
        raise ConnectionError("down")

    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == failures:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_ops, "_run_sync", failing)
    monkeypatch.setattr(cli_ops.time, "sleep", fake_sleep)
    CliRunner().invoke(app, ["sync", "--every", "1"])
    assert max(waits) == cli_ops.EVERY_BACKOFF_MAX_SECONDS
    assert waits == sorted(waits)


def test_a_single_sync_still_fails_with_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(settings: Any) -> _Report:
        raise ConnectionError("down")

    monkeypatch.setattr(cli_ops, "_run_sync", failing)
    result = CliRunner().invoke(app, ["sync"])
    assert result.exit_code == 1
    assert "sync failed: ConnectionError: down" in result.output


def test_a_bad_setting_is_exit_2_naming_it_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(settings: Any) -> _Report:
        raise AssertionError("no run with a bad setting")

    monkeypatch.setattr(cli_ops, "_run_sync", never)
    monkeypatch.setenv("RETURNBRIDGE_SYNC__CONCURRENCY", "-2")
    for command in (["sync"], ["sync", "--every", "5"], ["replay", "--return", "ret_1"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, command
        assert "RETURNBRIDGE_SYNC__CONCURRENCY" in result.output
        assert "Exit" not in result.output


def test_every_must_be_above_zero() -> None:
    result = CliRunner().invoke(app, ["sync", "--every", "0"])
    assert result.exit_code == 2 and "--every" in result.output
