"""How inferred values are written to and read from Reveni's wire: filter dates, status and
transaction-type casing.

Statuses are written in `status_case` and read in either casing (`IN_PROGRESS` as Reveni's MCP
enum spells it, `in_progress` as its webhooks do), unless `status_case_strict` asks for the
written spelling only. Inside returnbridge a status is always our lower-case name.

Every choice comes from `ReveniInferred` (never a literal here), so correcting a guess is a
settings change. The client writes with these functions; a server (the simulator, a test fake)
can read with the inverse ones, so the two sides cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.statuses import STATUSES

PARTIALLY_ACCEPTED = "partially_accepted"
TRANSACTION_TYPES = ("refund", "exchange")


# --------------------------------------------------------------------------- statuses


def status_to_wire(status: str, inferred: ReveniInferred) -> str:
    """Our status name as Reveni spells it (casing, the partly-accepted name)."""
    if status not in STATUSES:
        raise ValueError(f"unknown Reveni status {status!r}; expected one of {list(STATUSES)}")
    wire = inferred.partially_accepted_status if status == PARTIALLY_ACCEPTED else status
    return wire.upper() if inferred.status_case == "upper" else wire


def status_name(text: str, inferred: ReveniInferred) -> str | None:
    """The status a wire spelling names (`IN_PROGRESS` or `in_progress` -> `in_progress`, the
    partly-accepted wire name -> `partially_accepted`), or None: not a status, or, with
    `status_case_strict`, not spelt as `status_to_wire` spells it."""
    folded = text.lower()
    if folded == inferred.partially_accepted_status.lower():
        name = PARTIALLY_ACCEPTED
    elif folded in STATUSES:
        name = folded
    else:
        return None
    if inferred.status_case_strict and text != status_to_wire(name, inferred):
        return None
    return name


def status_from_wire(value: Any, inferred: ReveniInferred) -> Any:
    """Reveni's spelling of a status as our name; anything else (not a status, or the other
    casing under `status_case_strict`) is returned unchanged, so that validation reports it with
    its field path."""
    if not isinstance(value, str):
        return value
    name = status_name(value, inferred)
    return value if name is None else name


def normalise_return(raw: Any, inferred: ReveniInferred) -> Any:
    """A return payload with every status field in our vocabulary, ready for `Return` validation.

    The one place response casing is undone: the return's `status` (casing and the partly-accepted
    name), and the item, refund and label statuses too, in either casing (with
    `status_case_strict`: only when Reveni upper-cases statuses). Those three are lower-case words
    in our models; lower-casing them is a no-op when they already are.
    """
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    if "status" in out:
        out["status"] = status_from_wire(out["status"], inferred)
    if inferred.status_case_strict and inferred.status_case != "upper":
        return out
    for key in ("return_items", "refunds"):
        if isinstance(out.get(key), list):
            out[key] = [_lower_key(entry, "status") for entry in out[key]]
    if isinstance(out.get("delivery"), dict):
        out["delivery"] = _lower_key(out["delivery"], "label_status")
    return out


def _lower_key(entry: Any, key: str) -> Any:
    if isinstance(entry, dict) and isinstance(entry.get(key), str):
        return {**entry, key: entry[key].lower()}
    return entry


def transaction_type_to_wire(kind: str, inferred: ReveniInferred) -> str:
    """`refund` / `exchange` as the list filter spells it (REFUND / EXCHANGE by default)."""
    if kind.lower() not in TRANSACTION_TYPES:
        raise ValueError(f"unknown transaction type {kind!r}; expected one of {TRANSACTION_TYPES}")
    return kind.upper() if inferred.transaction_type_case == "upper" else kind.lower()


# --------------------------------------------------------------------------- date filters


def format_filter_value(
    value: datetime | date, inferred: ReveniInferred, *, bound: Literal["from", "to"] = "from"
) -> str:
    """A date filter value as the list endpoint takes it.

    `date` precision: `YYYY-MM-DD`, the day `value` falls on in `inferred.date_filter_timezone`
    (a `_from` then covers the whole day: never later than asked, so nothing is lost).
    `datetime` precision: ISO-8601 UTC with `Z`, exact to the microsecond (never rounded up); a
    plain `date` means its first instant for `_from` and its last instant for `_to`.
    A naive datetime is refused: which day it means would be a guess.
    """
    zone = ZoneInfo(inferred.date_filter_timezone)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"filter time {value.isoformat()} needs a timezone")
        if inferred.date_filter_precision == "date":
            return value.astimezone(zone).date().isoformat()
        return _iso_utc(value)
    if inferred.date_filter_precision == "date":
        return value.isoformat()
    start = datetime.combine(value, time(), tzinfo=zone)
    if bound == "to":
        return _iso_utc(start + timedelta(days=1) - timedelta(microseconds=1))
    return _iso_utc(start)


def parse_filter_value(
    text: str, inferred: ReveniInferred, *, bound: Literal["from", "to"] = "from"
) -> datetime:
    """The instant a filter value stands for: a `_from` is the first instant it includes, a `_to`
    the last (both inclusive). Raises ValueError for a value of the wrong shape."""
    zone = ZoneInfo(inferred.date_filter_timezone)
    if inferred.date_filter_precision == "date":
        day = date.fromisoformat(text)
        if len(text) != 10:
            raise ValueError(f"expected YYYY-MM-DD, got {text!r}")
        start = datetime.combine(day, time(), tzinfo=zone)
        if bound == "to":
            start = start + timedelta(days=1) - timedelta(microseconds=1)
        return start.astimezone(UTC)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"filter time {text!r} needs a timezone")
    return moment.astimezone(UTC)


def _iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
