"""`SlackSettings.channels` and `.mentions` are checked when the settings load, naming the variable:
a map without every owner would let the reconciliation run to its very end and die there with a
KeyError."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from returnbridge.connectors.slack import SlackSettings
from returnbridge.connectors.slack.settings import OWNERS
from returnbridge.core.codes import Owner
from returnbridge.settings import Settings, describe_settings_error

ALL = {"finance": "#returns-finance", "ops": "#returns-ops", "cx": "#returns-cx"}


def _load_error(monkeypatch: pytest.MonkeyPatch, name: str, value: object) -> str:
    monkeypatch.setenv(name, json.dumps(value))
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)
    return describe_settings_error(info.value)


def test_the_owners_are_core_s_owners() -> None:
    # connectors/ may not import core/, so the settings keep the names; they must not drift.
    assert sorted(OWNERS) == sorted(owner.value for owner in Owner)


def test_the_defaults_and_a_full_map_load() -> None:
    assert SlackSettings().channels == ALL
    ids = {"finance": "C0123ABCDE", "ops": "G01234567", "cx": "#cx"}
    assert SlackSettings(channels=ids).channel_for("ops") == "G01234567"


def test_a_partial_map_is_refused_at_load_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said = _load_error(monkeypatch, "RETURNBRIDGE_SLACK__CHANNELS", {"finance": "#fin"})
    assert said.startswith("RETURNBRIDGE_SLACK__CHANNELS: ")
    assert "no channel for 'ops', 'cx'" in said
    assert len(said.splitlines()) == 1


def test_the_error_names_the_variable_without_the_settings_root() -> None:
    with pytest.raises(ValidationError, match="RETURNBRIDGE_SLACK__CHANNELS: no channel for 'cx'"):
        SlackSettings(channels={"finance": "#fin", "ops": "#ops"})


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ({**ALL, "legal": "#legal"}, "'legal' is not an owner (the owners are finance, ops, cx)"),
        ({**ALL, "ops": ""}, "the channel of 'ops' is empty"),
        ({**ALL, "ops": "   "}, "the channel of 'ops' is empty"),
        ({**ALL, "cx": "returns-cx"}, "the channel of 'cx', 'returns-cx', is neither"),
        ({**ALL, "cx": "#"}, "the channel of 'cx', '#', is neither"),
        ({**ALL, "cx": "# cx"}, "the channel of 'cx', '# cx', is neither"),
        ({**ALL, "cx": "D0123ABCDE"}, "is neither a #name nor a channel id (C... or G...)"),
        ({**ALL, "cx": "c0123abcde"}, "is neither"),
    ],
    ids=["unknown-owner", "empty", "blank", "no-hash", "bare-hash", "space", "dm-id", "lower-id"],
)
def test_a_bad_channel_map_is_refused_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch, channels: dict[str, str], message: str
) -> None:
    said = _load_error(monkeypatch, "RETURNBRIDGE_SLACK__CHANNELS", channels)
    assert said.startswith("RETURNBRIDGE_SLACK__CHANNELS: ")
    assert message in said


def test_mentions_must_name_owners(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SlackSettings(mentions={"finance": "S0FINANCE"}).mention_for("finance") == "S0FINANCE"
    said = _load_error(monkeypatch, "RETURNBRIDGE_SLACK__MENTIONS", {"finanse": "S0FINANCE"})
    assert said == (
        "RETURNBRIDGE_SLACK__MENTIONS: 'finanse' is not an owner (the owners are finance, ops, cx)"
    )
