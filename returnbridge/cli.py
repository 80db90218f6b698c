"""The `returnbridge` command (contract.md §2).

Exit status: 0 when the command ran (exceptions found in the data are not failures); 2 for bad
input such as an invalid scenario file, with a message naming the file, the key and the problem;
1 for anything unexpected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from returnbridge.scenario import Scenario, ScenarioError, load_scenario
from returnbridge.scenarios import builtin_scenario

app = typer.Typer(
    name="returnbridge",
    help="Keeps returns consistent between Centra and Reveni.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sim_app = typer.Typer(help="Serve a local simulator of Centra or Reveni.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")

ScenarioOption = Annotated[
    Path | None,
    typer.Option(
        "--scenario",
        help="Scenario file (YAML or JSON, contract.md §3); default: the built-in basic one.",
    ),
]


def _fail_input(message: str) -> NoReturn:
    typer.echo(f"returnbridge: {message}", err=True)
    raise typer.Exit(2)


def _scenario_or_exit(path: Path | None) -> Scenario:
    """The scenario at `path`, or the built-in `basic` one; exits 2 on a bad file."""
    if path is None:
        return builtin_scenario("basic")
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        _fail_input(str(exc))


@sim_app.command("centra")
def sim_centra(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8081,
    scenario: ScenarioOption = None,
    token: Annotated[
        str, typer.Option(help="Integration API token accepted as Bearer or cookie.")
    ] = "centra-sim-token",
    order_api_secret: Annotated[
        str, typer.Option(help="REST Order API secret (API-Authorization header).")
    ] = "centra-sim-secret",
    plan: Annotated[
        str | None, typer.Option(help="Override the scenario's rate-limit plan.")
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="Deliver Webhook-plugin events (Integration API mode) here.")
    ] = None,
    webhook_secret: Annotated[
        str | None, typer.Option(help="Endpoint secret used to sign X-Centra-Signature.")
    ] = None,
) -> None:
    """Serve the Centra simulator: GraphQL at /graphql, the REST Order API, webhooks, /_sim."""
    loaded = _scenario_or_exit(scenario)
    from returnbridge.connectors.centra.plans import PLANS
    from returnbridge.simulators.centra.app import run

    if plan is not None and plan not in PLANS:
        _fail_input(f"--plan: unknown plan {plan!r}; expected one of {sorted(PLANS)}")
    if (webhook_url is None) != (webhook_secret is None):
        _fail_input("--webhook-url and --webhook-secret go together")
    typer.echo(f"Centra simulator on http://{host}:{port} (GraphQL at /graphql)", err=True)
    run(
        loaded,
        host,
        port,
        token=token,
        order_api_secret=order_api_secret,
        plan=plan,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )


@app.command("demo")
def demo(
    scenario: ScenarioOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print exactly one JSON document: the run summary.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the run summary to DIR/summary.json.")
    ] = None,
) -> None:
    """Start the simulators on free loopback ports, run the cycle, print a summary."""
    import json
    import logging

    from returnbridge.demo import render_table, run_demo

    loaded = _scenario_or_exit(scenario)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    summary, reads = run_demo(loaded)
    document = json.dumps(summary, indent=2, default=str)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(document + "\n", encoding="utf-8")
    if as_json:
        typer.echo(document)
        return
    typer.echo("Orders behind the scenario's Reveni returns, read from Centra (batched):\n")
    typer.echo(render_table(reads))
    calls = summary["api_calls"]
    typer.echo(
        f"\nCentra API: {calls['centra_requests']} request(s), "
        f"{calls['centra_mutations']} mutation(s); Centra effects: "
        + ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in summary["centra"].items())
    )


def main() -> None:  # pragma: no cover - console entry for `python -m returnbridge`
    sys.exit(app())
