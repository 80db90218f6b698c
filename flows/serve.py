"""Serve every deployment `prefect.yaml` declares from one process, with Prefect's runner and no
work pool (docs/architecture.md#deployments-and-scale-out).

`returnbridge serve` starts this module as its runner (`python -m flows.serve`); it can also be
run on its own against any Prefect server (`PREFECT_API_URL` set). `prefect.yaml` is the one
place deployments are declared: names, entrypoints, schedules, parameters, concurrency rules,
tags and descriptions are read from it here exactly as `prefect deploy --all` reads them for a
work pool, so the one-machine and the multi-machine paths cannot drift apart.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Schedule

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"

log = logging.getLogger(__name__)


class DeploymentFileError(ValueError):
    """`prefect.yaml` declares something the runner cannot serve; the message names it."""


@dataclass(frozen=True)
class DeclaredDeployment:
    """One entry of `prefect.yaml`'s `deployments:`, as the runner serves it."""

    name: str
    entrypoint: str
    description: str | None
    parameters: dict[str, Any]
    schedules: list[Schedule]
    concurrency: ConcurrencyLimitConfig | None
    tags: list[str]

    def load_flow(self) -> Flow[..., Any]:
        """The flow object the entrypoint names (`flows/x.py:fn` or `flows.x.fn`)."""
        if ":" in self.entrypoint:
            path, _, attribute = self.entrypoint.partition(":")
            module_name = path.removesuffix(".py").replace("/", ".")
        else:
            module_name, _, attribute = self.entrypoint.rpartition(".")
        module = importlib.import_module(module_name)
        found = getattr(module, attribute, None)
        if not isinstance(found, Flow):
            raise DeploymentFileError(
                f"deployment {self.name!r}: entrypoint {self.entrypoint!r} is not a Prefect flow"
            )
        return found


# An interval schedule without an anchor in prefect.yaml is anchored so that its first run comes
# this long after `serve` starts, not one whole interval later (Prefect schedules only runs at
# or after the moment the deployment is registered, and the anchor defaults to that moment).
FIRST_RUN_AFTER = timedelta(seconds=10)


def _schedule(where: str, item: dict[str, Any]) -> Schedule:
    kinds = [k for k in ("interval", "cron", "rrule") if k in item]
    if len(kinds) != 1:
        raise DeploymentFileError(f"{where}: needs exactly one of interval, cron, rrule")
    interval = item.get("interval")
    if interval is not None and (not isinstance(interval, int | float) or interval <= 0):
        raise DeploymentFileError(f"{where}: interval must be a positive number of seconds")
    extra: dict[str, Any] = {}
    if interval is not None:
        anchor = item.get("anchor_date")
        extra["anchor_date"] = (
            datetime.fromisoformat(str(anchor))
            if anchor is not None
            else datetime.now(UTC) - timedelta(seconds=interval) + FIRST_RUN_AFTER
        )
    return Schedule(
        interval=timedelta(seconds=interval) if interval is not None else None,
        cron=item.get("cron"),
        rrule=item.get("rrule"),
        timezone=item.get("timezone"),
        active=bool(item.get("active", True)),
        parameters=dict(item.get("parameters") or {}),
        slug=item.get("slug"),
        **extra,
    )


def _concurrency(where: str, value: Any) -> ConcurrencyLimitConfig | None:
    if value is None:
        return None
    if isinstance(value, int):
        return ConcurrencyLimitConfig(limit=value)
    if not isinstance(value, dict) or "limit" not in value:
        raise DeploymentFileError(f"{where}: concurrency_limit needs a limit")
    strategy = value.get("collision_strategy", "ENQUEUE")
    try:
        collision = ConcurrencyLimitStrategy(strategy)
    except ValueError:
        raise DeploymentFileError(
            f"{where}: collision_strategy {strategy!r} is not ENQUEUE or CANCEL_NEW"
        ) from None
    return ConcurrencyLimitConfig(limit=int(value["limit"]), collision_strategy=collision)


def declared_deployments(path: Path = PREFECT_YAML) -> list[DeclaredDeployment]:
    """Every deployment of `path`, checked: a name, an entrypoint, schedules the runner can take."""
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for index, entry in enumerate(config.get("deployments") or []):
        name = entry.get("name")
        where = f"{path.name}: deployments[{index}]" + (f" ({name})" if name else "")
        if not name or not entry.get("entrypoint"):
            raise DeploymentFileError(f"{where}: needs a name and an entrypoint")
        out.append(
            DeclaredDeployment(
                name=name,
                entrypoint=entry["entrypoint"],
                description=entry.get("description"),
                parameters=dict(entry.get("parameters") or {}),
                schedules=[
                    _schedule(f"{where} schedules[{i}]", s)
                    for i, s in enumerate(entry.get("schedules") or [])
                ],
                concurrency=_concurrency(where, entry.get("concurrency_limit")),
                tags=list(entry.get("tags") or []),
            )
        )
    if not out:
        raise DeploymentFileError(f"{path}: declares no deployments")
    return out


def runner_deployments(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    """The deployments of `path` as the runner serves them (same names as `prefect deploy`)."""
    return [
        declared.load_flow().to_deployment(  # type: ignore[misc]  # sync call: not a coroutine
            name=declared.name,
            description=declared.description,
            parameters=declared.parameters,
            schedules=declared.schedules,
            concurrency_limit=declared.concurrency,
            tags=declared.tags,
        )
        for declared in declared_deployments(path)
    ]


def main() -> None:
    """Serve them until SIGTERM / SIGINT. Schedules are not paused on shutdown: a restart of
    `returnbridge serve` must not leave the syncs switched off."""
    deployments = runner_deployments()
    serve(*deployments, pause_on_shutdown=False, print_starting_message=False)


if __name__ == "__main__":
    main()
