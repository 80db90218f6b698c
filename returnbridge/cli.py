"""The `returnbridge` command (docs/architecture.md#the-cli-and-the-run-summary).

Exit status: 0 when the command ran (exceptions found in the data are not failures); 2 for bad
input such as an invalid scenario file, with a message naming the file, the key and the problem;
1 for anything unexpected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from returnbridge import cli_ops, cli_queue, cli_serve, cli_status, cli_watch
from returnbridge.scenario import Scenario, ScenarioError, load_scenario
from returnbridge.scenarios import builtin_scenario

app = typer.Typer(
    name="returnbridge",
    help="Keeps returns consistent between Centra and Reveni.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sim_app = typer.Typer(
    help="Serve a local simulator of Centra or Reveni, or a Slack stand-in.", no_args_is_help=True
)
app.add_typer(sim_app, name="sim")

ScenarioOption = Annotated[
    Path | None,
    typer.Option(
        "--scenario",
        help="Scenario file (YAML or JSON); default: the built-in basic one.",
    ),
]
DemoScenarioOption = Annotated[
    Path | None,
    typer.Option(
        "--scenario",
        help="Scenario file (YAML or JSON); default: the built-in showcase, "
        "which shows every exception code the data can show.",
    ),
]


def _fail_input(message: str) -> NoReturn:
    typer.echo(f"returnbridge: {message}", err=True)
    raise typer.Exit(2)


def _scenario_or_exit(path: Path | None, default: str = "basic") -> Scenario:
    """The scenario at `path`, or the built-in `default` one; exits 2 on a bad file."""
    if path is None:
        return builtin_scenario(default)
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


@sim_app.command("reveni")
def sim_reveni(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8082,
    scenario: ScenarioOption = None,
    api_key: Annotated[
        str, typer.Option(help="API key accepted as Bearer, for the scenario's store only.")
    ] = "reveni-sim-key",
    webhook_secret: Annotated[
        str | None, typer.Option(help="Sign webhook deliveries with this secret (HMAC).")
    ] = None,
) -> None:
    """Serve the Reveni simulator: /merchants/v0/stores/{store_id}/..., webhooks, /_sim."""
    loaded = _scenario_or_exit(scenario)
    from returnbridge.simulators.reveni.app import run

    typer.echo(
        f"Reveni simulator on http://{host}:{port} "
        f"(store {loaded.reveni.store_id}: /merchants/v0/stores/{loaded.reveni.store_id}/)",
        err=True,
    )
    run(loaded, host, port, api_key=api_key, webhook_secret=webhook_secret)


@sim_app.command("slack")
def sim_slack(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8083,
    token: Annotated[str, typer.Option(help="Bot token accepted as Bearer.")] = (
        "xoxb-returnbridge-sim"
    ),
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            help="A channel that exists (repeatable; default: the three owner channels and "
            "the watchdog's #returns-engineering).",
        ),
    ] = None,
    signing_secret: Annotated[
        str,
        typer.Option(
            help="Signing secret the clicks made through /_sim/interact and /_sim/submit_view "
            "are signed with (the receiver's RETURNBRIDGE_SLACK__SIGNING_SECRET)."
        ),
    ] = "returnbridge-sim-signing-secret",
    interactivity_url: Annotated[
        str | None,
        typer.Option(
            help="Where clicks are sent unless a /_sim request names its own URL, e.g. "
            "http://127.0.0.1:8090/slack/actions (the receiver's POST /slack/actions)."
        ),
    ] = None,
) -> None:
    """Serve a Slack Web API stand-in (chat.postMessage, chat.update, views.open,
    conversations.history, chat.postEphemeral, auth.test) for the digests and their buttons,
    with /_sim (messages, faults: 429 with Retry-After, down; signed clicks: interact,
    submit_view)."""
    from returnbridge.simulators.slack import run
    from returnbridge.simulators.slack.app import DEFAULT_CHANNELS

    channels = channel or list(DEFAULT_CHANNELS)
    typer.echo(f"Slack stand-in on http://{host}:{port}/api/ ({', '.join(channels)})", err=True)
    run(
        host,
        port,
        token=token,
        channels=channels,
        signing_secret=signing_secret,
        interactivity_url=interactivity_url,
    )


@sim_app.command("mail")
def sim_mail(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1.")] = 8025,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write every e-mail received to DIR/*.eml.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Require this SMTP login.")] = None,
    password: Annotated[str | None, typer.Option(help="The login's password.")] = None,
) -> None:
    """Serve an SMTP server (aiosmtpd) on loopback for the month-end e-mail: it keeps every
    message it receives (and writes it to --out). Stop with Ctrl-C."""
    import signal
    import threading

    from returnbridge.simulators.mail import MailStandIn

    if (user is None) != (password is None):
        _fail_input("--user and --password go together")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with MailStandIn(port=port, out_dir=out, user=user, password=password) as mailbox:
        where = f", writing each to {out}/" if out is not None else ""
        typer.echo(f"SMTP stand-in on {mailbox.host}:{mailbox.port}{where}", err=True)
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        typer.echo(f"SMTP stand-in stopped: {len(mailbox.messages)} e-mail(s) received", err=True)


@app.command("demo")
def demo(
    scenario: DemoScenarioOption = None,
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

    from returnbridge import demo as demo_module

    loaded = _scenario_or_exit(scenario, default="showcase")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        run = demo_module.run_demo(loaded, out=out, progress=lambda m: typer.echo(m, err=True))
    except Exception as exc:  # exit 1, one line on stderr, nothing on stdout
        logging.getLogger("returnbridge.demo").debug("demo failed", exc_info=True)
        typer.echo(f"returnbridge: demo failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    document = json.dumps(run.summary, indent=2, default=str)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(document + "\n", encoding="utf-8")
    typer.echo(document if as_json else demo_module.render_report(run))


cli_ops.register(app)
cli_queue.register(app)
cli_status.register(app)
cli_serve.register(app)
cli_watch.register(app)


def main() -> None:  # pragma: no cover - console entry for `python -m returnbridge`
    sys.exit(app())
