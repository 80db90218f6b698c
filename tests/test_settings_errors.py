"""Settings errors name the environment variable and the problem, never a secret's value, and
durations that cannot be negative are refused."""

from __future__ import annotations

import pytest

from returnbridge.settings import Settings, describe_settings_error


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Exception) as info:
        Settings(_env_file=None)
    return describe_settings_error(info.value)


@pytest.mark.parametrize(
    "name",
    [
        "RETURNBRIDGE_RECONCILE__GRACE",
        "RETURNBRIDGE_RECONCILE__LOOK_BACK",
        "RETURNBRIDGE_RECONCILE__FULL_RECOMPUTE_AFTER",
        "RETURNBRIDGE_RECONCILE__REFUND_PENDING_MAX",
        "RETURNBRIDGE_SYNC__INITIAL_LOOK_BACK",
    ],
)
def test_a_negative_duration_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    said = _error(monkeypatch, **{name: "-P2D"})
    assert said.startswith(name) and "must not be negative" in said


def test_malformed_json_names_the_variable_not_the_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said = _error(monkeypatch, RETURNBRIDGE_SYNC__PRIORITY='["refund",')
    assert said.startswith("RETURNBRIDGE_SYNC__PRIORITY: not valid JSON")


def test_an_out_of_range_number_names_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said = _error(monkeypatch, RETURNBRIDGE_SYNC__CONCURRENCY="-2")
    assert said == (
        "RETURNBRIDGE_SYNC__CONCURRENCY: Input should be greater than or equal to 1, got '-2'"
    )


def test_a_secret_value_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _error(monkeypatch, RETURNBRIDGE_RECEIVER__CENTRA_SECRET="")
    assert said.startswith("RETURNBRIDGE_RECEIVER__CENTRA_SECRET")
    assert "got" not in said


def test_every_problem_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _error(
        monkeypatch, RETURNBRIDGE_SYNC__CONCURRENCY="0", RETURNBRIDGE_RECONCILE__GRACE="-PT1H"
    )
    assert len(said.splitlines()) == 2
