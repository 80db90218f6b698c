"""`returnbridge demo`: both simulators, the webhook receiver and the sync, end to end over real
HTTP: the showcase's effects in Centra's ground truth, its exceptions with owners, and the exit
codes; and what a newcomer reads: the planted problems marked and counted, Reveni ids in every
table, one digest as Slack shows it, and next steps that work when pasted."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from returnbridge.blocks_text import blocks_to_text
from returnbridge.cli import app
from returnbridge.demo import (
    DEMO_DIR,
    LEDGER_URL_ENV,
    PLANTED,
    SHOWCASE_PLANTS,
    WAREHOUSE_PATH_ENV,
    DemoRun,
    find_plants,
    next_steps,
    planted_problems,
    render_report,
    run_demo,
    shown_digest,
)
from returnbridge.ledger import Ledger
from returnbridge.scenario import Scenario
from returnbridge.scenarios import builtin_scenario

ROOT = Path(__file__).resolve().parent.parent

SUMMARY_KEYS = {"centra", "exceptions", "gaps", "digests", "report", "api_calls"}
SHOWCASE_EXCEPTIONS = {
    # validation: found before anything is written
    ("order_not_found", "cx", 9999, "ret_nf_9999", None),
    ("order_not_returnable", "finance", 1002, "ret_arch_1002", None),
    ("order_not_returnable", "finance", 1005, "ret_canc_1005", None),
    ("sku_not_in_order", "ops", 1007, "ret_sku_1007", "SCARF-01"),
    ("quantity_exceeds_shipped", "cx", 1003, "ret_part_1003", "JEANS-32"),
    ("quantity_exceeds_shipped", "cx", 1006, "ret_two_1006c", "DRESS-RED-38"),
    # processing: found while planning or sending the effects
    ("refund_amount_mismatch", "finance", 1011, "ret_mism_1011", None),
    ("refund_failed_at_gateway", "finance", 1004, "ret_same_1004", None),
    ("exchange_out_of_stock", "cx", 1008, "ret_exch_1008", "JEANS-32"),
    ("instant_deadline_near", "ops", 1013, "ret_late_1013", None),
}
# Found by the daily reconciliation: the plants (open), and the missed July return (healed by
# its fixes: its Centra return, restock and credit were made under their ledger keys).
RECONCILED_OPEN = {
    ("duplicate_refund", "finance", 1016, "ret_dup_1016", None),
    ("unmatched_centra_refund", "finance", 1001, None, None),
}
RECONCILED_HEALED = {
    ("return_missing", "ops", 1017, "ret_old_1017", None),
    ("restock_missing", "ops", 1017, "ret_old_1017", "DRESS-RED-40"),
    ("refund_missing", "finance", 1017, "ret_old_1017", None),
}
# Found by the month-end report: Reveni disbursed an instant refund for an order Centra does
# not have, so no credit can ever match it.
MONTH_END_OPEN = {("settlement_unmatched", "finance", 9999, "ret_nf_9999", None)}
ALL_EXCEPTIONS = SHOWCASE_EXCEPTIONS | RECONCILED_OPEN | RECONCILED_HEALED | MONTH_END_OPEN
# Accepted (or partly accepted) and valid: each gets its Centra return.
PROCESSED = {
    "ret_std_1001", "ret_same_1004", "ret_two_1006a", "ret_two_1006b", "ret_exch_1008",
    "ret_exch_1009", "ret_mix_1010", "ret_mism_1011", "ret_pacc_1014", "ret_sc_1015",
    "ret_dup_1016", "ret_old_1017", "ret_psp_1018",
}  # fmt: skip


def unlimited_showcase() -> Scenario:
    """The showcase on Centra's `unlimited` plan: the same effects and exceptions, without
    waiting for Growth's rate-limit windows (the slow `test_make_demo_on_growth_...` keeps
    those: the showcase as `make demo` runs it)."""
    scenario = builtin_scenario("showcase")
    centra = scenario.centra.model_copy(update={"plan": "unlimited"})
    return scenario.model_copy(update={"centra": centra})


@pytest.fixture(scope="module")
def showcase_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The showcase, once per module: a few seconds on `unlimited` (a minute on Growth)."""
    return run_demo(unlimited_showcase(), out=tmp_path_factory.mktemp("showcase"))


def _rows(summary: dict[str, Any], *statuses: str) -> set[tuple[object, ...]]:
    return {
        (e["code"], e["owner"], e["order_number"], e["reveni_return_id"], e["sku"])
        for e in summary["exceptions"]
        if not statuses or e["status"] in statuses
    }


def _refunds_by_return(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    external = {r["id"]: r["external_id"] for r in summary["centra"]["returns"]}
    found: dict[str, list[dict[str, Any]]] = {}
    for refund in summary["centra"]["refunds"]:
        if refund["return_id"] is not None:
            found.setdefault(external[refund["return_id"]], []).append(refund)
    return found


def test_showcase_raises_exactly_its_exceptions_with_owners(showcase_run: DemoRun) -> None:
    assert _rows(showcase_run.summary, "open") == (
        SHOWCASE_EXCEPTIONS | RECONCILED_OPEN | MONTH_END_OPEN
    )
    assert _rows(showcase_run.summary, "resolved") == RECONCILED_HEALED
    assert _rows(showcase_run.summary) == ALL_EXCEPTIONS
    assert showcase_run.idle  # nothing pending or in doubt when the demo stopped


def test_reconciliation_shows_the_plants_and_heals_the_fixable(showcase_run: DemoRun) -> None:
    gaps = {
        (g["code"], g["owner"], g["order_number"], g["reveni_return_id"], g["fixable"],
         g["outcome"])
        for g in showcase_run.summary["gaps"]
    }  # fmt: skip
    assert gaps >= {
        ("duplicate_refund", "finance", 1016, "ret_dup_1016", False, "still_open"),
        ("unmatched_centra_refund", "finance", 1001, None, False, "still_open"),
        ("return_missing", "ops", 1017, "ret_old_1017", True, "healed"),
        ("restock_missing", "ops", 1017, "ret_old_1017", True, "healed"),
        ("refund_missing", "finance", 1017, "ret_old_1017", True, "healed"),
    }
    # the other gaps are the sync's own exceptions seen again (same code and keys)
    sync_raised = {(c, o, n, r) for c, o, n, r, _ in SHOWCASE_EXCEPTIONS}
    rest = {g[:4] for g in gaps} - {g[:4] for g in RECONCILED_OPEN | RECONCILED_HEALED}
    assert rest <= sync_raised


def test_one_digest_per_owner_reaches_slack(showcase_run: DemoRun) -> None:
    digests = showcase_run.summary["digests"]
    assert [(d["owner"], d["channel"], d["sent"]) for d in digests] == [
        ("cx", "#returns-cx", True),
        ("finance", "#returns-finance", True),
        ("ops", "#returns-ops", True),
    ]
    assert len(showcase_run.slack_messages) == 3
    finance = next(d for d in digests if d["owner"] == "finance")
    assert "Finance" in finance["text"] and "6 open" in finance["text"]
    assert all("@" not in m["text"] for m in showcase_run.slack_messages)


def _ground_truth(summary: dict[str, Any]) -> dict[str, Any]:
    """Centra's effects without Centra's generated ids (they depend on sending order)."""
    centra = summary["centra"]
    external = {r["id"]: r["external_id"] for r in centra["returns"]}
    return {
        "returns": sorted(
            (r["external_id"], sorted((ln["sku"], ln["quantity"]) for ln in r["lines"]))
            for r in centra["returns"]
        ),
        "stock_changes": sorted(
            (c["description"], c["sku"], c["warehouse_id"], c["delta"])
            for c in centra["stock_changes"]
        ),
        "refunds": sorted(
            (
                external.get(r["return_id"], "-"),
                r["amount"],
                r["currency"],
                r["via_psp"],
                r["status"],
            )
            for r in centra["refunds"]
        ),
        "orders_created": sorted(
            (external[o["origin_return_id"]], o["total"], str(o["lines"]))
            for o in centra["orders_created"]
        ),
    }


def test_every_accepted_valid_return_is_in_centra_once(showcase_run: DemoRun) -> None:
    truth = _ground_truth(showcase_run.summary)
    per_return = Counter(rid for rid, _ in truth["returns"])
    # One Centra return each; the mixed one is two (its exchanged and its refunded items apart,
    # so the PSP refund covers exactly the refunded items).
    assert per_return == Counter({**dict.fromkeys(PROCESSED, 1), "ret_mix_1010": 2})
    returned = {rid: lines for rid, lines in truth["returns"]}
    # Partial acceptance: only the accepted dress comes back, the rejected coat does not.
    assert returned["ret_pacc_1014"] == [("DRESS-RED-38", 1)]
    # Rejected, cancelled and invalid returns: no Centra write.
    assert not {"ret_covr_1012", "ret_cncl_1001", "ret_nf_9999", "ret_arch_1002"} & set(per_return)


def test_restocks_are_one_change_per_return_into_the_returns_warehouse(
    showcase_run: DemoRun,
) -> None:
    changes = showcase_run.summary["centra"]["stock_changes"]
    assert changes, "accepted items marked restock must be restocked"
    assert {c["warehouse_id"] for c in changes} == {2}
    assert all(c["delta"] > 0 for c in changes)
    descriptions = {c["description"] for c in changes}
    assert all(d.startswith("returnbridge restock ret_") for d in descriptions)
    assert {d.removeprefix("returnbridge restock ") for d in descriptions} <= PROCESSED


def test_refunds_follow_who_paid_the_customer(showcase_run: DemoRun) -> None:
    refunds = _refunds_by_return(showcase_run.summary)
    # Standard refund to the original payment method: Centra's PSP, Reveni's amount.
    (std,) = refunds["ret_std_1001"]
    assert (std["via_psp"], std["amount"], std["currency"], std["status"]) == (
        True, "299.00", "SEK", "SUCCESS",
    )  # fmt: skip
    # Reveni paid (instant bank transfer, store credit): recorded, never a PSP refund.
    for rid in ("ret_two_1006a", "ret_two_1006b", "ret_sc_1015"):
        assert [r["via_psp"] for r in refunds[rid]] == [False], rid
    # The PSP refused 1004's refund: one FAILED entry, not retried.
    assert [r["status"] for r in refunds["ret_same_1004"]] == ["FAILED"]
    # Amount mismatch: nothing posted. The mixed return: Reveni's 99.00 for the socks, by PSP.
    assert "ret_mism_1011" not in refunds
    assert [(r["amount"], r["via_psp"]) for r in refunds["ret_mix_1010"]] == [("99.00", True)]
    # Never twice, never both forms.
    assert all(len(entries) == 1 for entries in refunds.values())


def test_exchanges_become_zero_value_orders_unless_out_of_stock(showcase_run: DemoRun) -> None:
    centra = showcase_run.summary["centra"]
    external = {r["id"]: r["external_id"] for r in centra["returns"]}
    created = {external[o["origin_return_id"]]: o for o in centra["orders_created"]}
    assert set(created) == {"ret_exch_1009", "ret_mix_1010"}
    assert all(Decimal(o["total"]) == 0 for o in created.values())
    assert "ret_exch_1008" not in created  # JEANS-32 sold out: exception for CX instead


def test_centra_is_read_in_batches(showcase_run: DemoRun) -> None:
    calls = showcase_run.summary["api_calls"]
    centra = showcase_run.summary["centra"]
    effects = (
        len(centra["returns"])
        + len(centra["stock_changes"])
        + len([r for r in centra["refunds"] if r["return_id"] is not None])
        + len(centra["orders_created"])
    )
    # The stock change rows are per SKU line; writes are per effect: never more than effects.
    assert calls["centra_mutations"] <= effects
    reads = calls["centra_requests"] - calls["centra_mutations"]
    assert reads <= 1.2 * len(builtin_scenario("showcase").reveni.returns)
    assert 0 < calls["reveni_requests"] <= 10


def test_human_output_shows_credits_and_exceptions_by_owner(showcase_run: DemoRun) -> None:
    text = render_report(showcase_run)
    assert f"Exceptions ({len(ALL_EXCEPTIONS)}), in the ledger:" in text
    assert "Open by owner: cx 4, finance 7, ops 2" in text
    assert "Month-end report 2026-10:" in text and "e-mailed to finance@example.com" in text
    assert "Reconciliation 2026-10-30:" in text and "restock_missing" in text
    _, rows = table(text, "Exceptions (")
    row = next(r for r in rows if r["code"] == "sku_not_in_order")
    record = next(e for e in showcase_run.exceptions if e.code == "sku_not_in_order")
    assert row == {
        "": PLANTED,
        "id": str(record.id),
        "code": "sku_not_in_order",
        "owner": "ops",
        "status": "open",
        "order": "1007",
        "Reveni return": "ret_sku_1007",
        "sku": "SCARF-01",
        "detail": record.detail,
    }
    assert "recorded (paid by Reveni)" in text and "by hand in Centra" in text


def table(text: str, title: str) -> tuple[list[str], list[dict[str, str]]]:
    """The table printed under the line starting with `title`: its header and its rows, cells
    by header name (the columns start where their header does; the planted mark's is "")."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    found = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", lines[start])]
    columns = found if found[0][0] == 0 else [(0, ""), *found]
    starts = [at for at, _ in columns] + [None]
    rows = [
        {name: line[starts[i] : starts[i + 1]].strip() for i, (_, name) in enumerate(columns)}
        for line in lines[start + 1 : end]
    ]
    return [name for _, name in columns], rows


def test_every_table_shows_the_reveni_return_id(showcase_run: DemoRun) -> None:
    text = render_report(showcase_run)
    titles = ("Credits on Centra orders:", "Exceptions (", "Reconciliation ", f"{PLANTED} Found")
    tables = {title: table(text, title) for title in titles}
    assert all("Reveni return" in header for header, _ in tables.values())
    # credits: Reveni's id for returnbridge's credits, "-" for those made by hand in Centra
    centra = showcase_run.summary["centra"]
    reveni_of = {r["id"]: r["external_id"] for r in centra["returns"]}
    credits = tables["Credits on Centra orders:"][1]
    assert sorted((r["order"], r["Reveni return"]) for r in credits) == sorted(
        (str(r["order_number"]), reveni_of.get(r["return_id"], "-")) for r in centra["refunds"]
    )
    exceptions = {r["id"]: r["Reveni return"] for r in tables["Exceptions ("][1]}
    assert exceptions == {str(e.id): e.reveni_return_id or "-" for e in showcase_run.exceptions}
    gaps = tables["Reconciliation "][1]
    assert sorted((g["gap"], g["Reveni return"]) for g in gaps) == sorted(
        (g["code"], g["reveni_return_id"] or "-") for g in showcase_run.summary["gaps"]
    )
    # the only rows without one are about an order alone (a refund made by hand in Centra)
    without = [r for _, rows in tables.values() for r in rows if r["Reveni return"] == "-"]
    assert without and all(r.get("order") in ("1001", "1016") for r in without)


def test_planted_problems_are_marked_and_all_found(showcase_run: DemoRun) -> None:
    text = render_report(showcase_run)
    assert f"{PLANTED} marks what the scenario planted on purpose" in text
    total = len(SHOWCASE_PLANTS)
    assert f"{PLANTED} Found {total} of {total} planted problems:" in text
    _, plants = table(text, f"{PLANTED} Found")
    assert len(plants) == total and all(p[""] == "✓ found" for p in plants)
    # every showcase exception and gap is one of its plants, marked
    for title in ("Exceptions (", "Reconciliation "):
        _, rows = table(text, title)
        assert rows and all(r[""] == PLANTED for r in rows), title
    # among the credits: the two refunds made by hand in Centra, and the one the PSP refused
    _, credits = table(text, "Credits on Centra orders:")
    marked = sorted((r["order"], r["Reveni return"], r["status"]) for r in credits if r[""])
    assert marked == [
        ("1001", "-", "SUCCESS"),
        ("1004", "ret_same_1004", "FAILED"),
        ("1016", "-", "SUCCESS"),
    ]
    assert all(r["how"] == "by hand in Centra" for r in credits if r["Reveni return"] == "-")


def test_a_plant_not_raised_is_counted_as_missed(showcase_run: DemoRun) -> None:
    missing = [e for e in showcase_run.exceptions if e.code != "restock_missing"]
    plants = find_plants(SHOWCASE_PLANTS, missing)
    assert [p.plant.reveni_return_id for p in plants if not p.found] == ["ret_old_1017"]
    text = render_report(dataclasses.replace(showcase_run, plants=plants))
    total = len(SHOWCASE_PLANTS)
    assert f"{PLANTED} Found {total - 1} of {total} planted problems:" in text
    _, rows = table(text, f"{PLANTED} Found")
    (missed,) = [r for r in rows if r[""] != "✓ found"]
    assert missed[""] == "✗ MISSED"
    assert missed["order"] == "1017" and missed["Reveni return"] == "ret_old_1017"


def test_only_scenarios_with_the_plants_count_them() -> None:
    assert planted_problems(builtin_scenario("showcase")) == list(SHOWCASE_PLANTS)
    assert planted_problems(unlimited_showcase()) == list(SHOWCASE_PLANTS)
    assert planted_problems(builtin_scenario("basic")) == []


def test_one_digest_is_shown_in_full_as_slack_shows_it(showcase_run: DemoRun) -> None:
    text = render_report(showcase_run)
    shown = shown_digest(showcase_run)
    assert shown is not None
    owner, message = shown
    biggest = max(len(m["blocks"]) for m in showcase_run.slack_messages)
    assert len(message["blocks"]) == biggest and owner in ("finance", "ops", "cx")
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"The {owner} digest in full"))
    assert message["channel"] in lines[start] and "digests.txt" in lines[start]
    body = blocks_to_text(message["blocks"]).splitlines()
    assert lines[start + 1 : start + 1 + len(body)] == [f"│ {ln}".rstrip() for ln in body]
    # the header first, underlined; no markup left that Slack would have turned into text
    assert body[0].startswith("Returns digest — ") and set(body[1]) == {"═"}
    everything = "\n".join(body)
    for markup in ("<http", "<!subteam", "&lt;", "&gt;", "&amp;", "|Runbook>"):
        assert markup not in everything, markup
    if any(block["type"] == "actions" for block in message["blocks"]):
        assert "[ Retry ] [ Resolve… ] [ Ignore… ] [ Assign to me ]" in everything
    # every digest, as Slack shows it, is in the run's folder
    assert showcase_run.folder is not None
    written = (showcase_run.folder / "digests.txt").read_text(encoding="utf-8")
    for posted in showcase_run.slack_messages:
        assert f"{posted['channel']}, as Slack shows it:" in written
        assert (
            "\n".join(f"│ {ln}".rstrip() for ln in blocks_to_text(posted["blocks"]).splitlines())
            in written
        )
    assert json.loads((showcase_run.folder / "slack-messages.json").read_text()) == (
        showcase_run.slack_messages
    )


def test_next_steps_work_when_pasted_in_the_project_folder(
    showcase_run: DemoRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    text = render_report(showcase_run)
    assert "\nNext steps\n" in text
    tail = text.split("\nNext steps\n", 1)[1]
    commands = [command for command, _ in next_steps(showcase_run)]
    assert all(f"  {command}" in tail.splitlines() for command in commands)
    assert showcase_run.ledger_path is not None
    url = f"{LEDGER_URL_ENV}=sqlite:///{showcase_run.ledger_path.resolve()}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RETURNBRIDGE_")}

    def paste(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=clean,
            capture_output=True,
            text=True,
            timeout=120,
        )

    listing = next(c for c in commands if c.endswith(" exceptions list"))
    assert listing.startswith(url)  # the demo's ledger, not the default one
    listed = paste(listing)
    assert listed.returncode == 0, listed.stderr
    live = [e for e in showcase_run.exceptions if e.status in ("open", "retrying")]
    assert all(str(e.order_number) in listed.stdout for e in live)
    assert all(e.reveni_return_id in listed.stdout for e in live if e.reveni_return_id)
    # `exceptions show N`: N is an exception of this run's ledger, and the command shows it
    show = next(c for c in commands if " exceptions show " in c)
    exception_id = int(show.rsplit(" ", 1)[1])
    with Ledger(f"sqlite:///{showcase_run.ledger_path}") as ledger:
        record = ledger.exception(exception_id)
    assert record is not None and record.status == "open"
    shown = paste(show)
    assert shown.returncode == 0, shown.stderr
    assert record.code in shown.stdout and str(record.order_number) in shown.stdout
    status = [c for c in commands if c.endswith(" status")]
    for command in status:  # when the CLI has `status`: it runs (STALE lines exit 1)
        assert command.startswith(url) and WAREHOUSE_PATH_ENV in command
        done = paste(command)
        assert done.returncode in (0, 1) and done.stdout.strip(), done.stderr
    # run again into a folder of one's own: `demo --out` exists
    again = next(c for c in commands if " demo --out " in c)
    assert "--out" in CliRunner().invoke(app, ["demo", "--help"]).stdout
    assert again.split(" demo ")[0].endswith("returnbridge")
    # and where to read next
    assert "docs/runbook.md" in tail and '"Run it for real"' in tail
    if (ROOT / "docs" / "on-call.md").exists():
        assert "docs/on-call.md" in tail


def test_the_printed_variables_are_those_the_commands_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from returnbridge.settings import load_settings

    monkeypatch.setenv(LEDGER_URL_ENV, "sqlite:///data/demo/ledger.db")
    monkeypatch.setenv(WAREHOUSE_PATH_ENV, "data/demo/warehouse.duckdb")
    settings = load_settings()
    assert settings.sync.ledger_url == "sqlite:///data/demo/ledger.db"
    assert settings.reconcile.warehouse_path == Path("data/demo/warehouse.duckdb")


def test_demo_json_on_stdout_is_exactly_one_document(tmp_path: Path) -> None:
    """Through the installed command: stdout holds the JSON and nothing else; exit 0."""
    exe = Path(sys.executable).with_name("returnbridge")
    scenario = tmp_path / "showcase-unlimited.json"
    scenario.write_text(unlimited_showcase().model_dump_json(by_alias=True))
    result = subprocess.run(
        [str(exe), "demo", "--json", "--out", str(tmp_path), "--scenario", str(scenario)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert "Sync run 1 done in" in result.stderr  # progress goes to stderr, never stdout
    summary = json.loads(result.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert set(summary["centra"]) == {"returns", "stock_changes", "refunds", "orders_created"}
    assert _rows(summary) == ALL_EXCEPTIONS
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "warehouse.duckdb").exists()
    assert (tmp_path / "ledger.db").exists()  # the ledger stays for `exceptions list` to read
    report = summary["report"]
    assert report["month"] == "2026-10" and report["sent"] is True
    assert report["html_path"] == str(tmp_path / "month-end-2026-10.html")
    assert Path(report["html_path"]).is_file()
    (eml,) = tmp_path.glob("*.eml")  # the e-mail as the SMTP server received it
    assert f"Message-ID: {report['message_id']}" in eml.read_text()


def test_without_out_the_demo_keeps_its_files_in_data_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --out: everything goes to data/demo/ under the current folder, and the next steps
    name that ledger (relative: they are pasted where the demo ran)."""
    scenario = tmp_path / "showcase-unlimited.json"
    scenario.write_text(unlimited_showcase().model_dump_json(by_alias=True))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--scenario", str(scenario)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / DEMO_DIR
    for name in (
        "ledger.db",
        "warehouse.duckdb",
        "summary.json",
        "digests.txt",
        "slack-messages.json",
        "month-end-2026-10.html",
    ):
        assert (folder / name).is_file(), name
    assert len(list(folder.glob("*.eml"))) == 1
    summary = json.loads((folder / "summary.json").read_text())
    assert _rows(summary) == ALL_EXCEPTIONS
    out = result.stdout
    assert out.index(f"Found {len(SHOWCASE_PLANTS)} of") < out.index("\nNext steps\n")
    assert f"This run's files are in {DEMO_DIR}/" in out
    assert f"  {LEDGER_URL_ENV}=sqlite:///{DEMO_DIR}/ledger.db " in out
    assert "Progress" not in out and "Sync run 1 done in" in result.stderr


@pytest.mark.slow
def test_make_demo_on_growth_finds_every_plant(tmp_path: Path) -> None:
    """`make demo` as a newcomer runs it: the built-in showcase on Growth's rate limits (about
    a minute), through the installed command, in a fresh folder."""
    exe = Path(sys.executable).with_name("returnbridge")
    result = subprocess.run(
        [str(exe), "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert "plan growth" in result.stderr
    total = len(SHOWCASE_PLANTS)
    assert f"Found {total} of {total} planted problems" in result.stdout
    summary = json.loads((tmp_path / DEMO_DIR / "summary.json").read_text())
    assert _rows(summary) == ALL_EXCEPTIONS


def test_demo_with_the_basic_scenario_file(tmp_path: Path) -> None:
    """The basic YAML file as shipped, but on `unlimited` (seconds instead of Growth's 20)."""
    from returnbridge.scenarios import builtin_scenario_path

    text = builtin_scenario_path("basic").read_text(encoding="utf-8")
    assert "  plan: growth\n" in text
    path = tmp_path / "basic.yaml"
    path.write_text(text.replace("  plan: growth\n", "  plan: unlimited\n"), encoding="utf-8")
    result = CliRunner().invoke(
        app, ["demo", "--json", "--out", str(tmp_path), "--scenario", str(path)]
    )
    assert result.exit_code == 0, result.output
    codes = {(e["code"], e["reveni_return_id"]) for e in json.loads(result.stdout)["exceptions"]}
    assert ("order_not_found", "ret_0005") in codes
    assert ("order_not_returnable", "ret_0002") in codes


def test_demo_with_a_bad_scenario_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"reveni": {"returns": [{"order_number": 1, "items": []}]}}))
    result = CliRunner().invoke(app, ["demo", "--json", "--scenario", str(path)])
    assert result.exit_code == 2
    assert "bad.json: reveni.returns[0].items" in result.output
    assert result.stdout == ""


def test_demo_with_an_impossible_history_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "reveni:\n  returns:\n    - order_number: 1\n      items: [{sku: X, quantity: 1}]\n"
        "      history: [in_progress, accepted, shipped]\n"
        "centra:\n  products: [{sku: X}]\n"
    )
    result = CliRunner().invoke(app, ["demo", "--scenario", str(path)])
    assert result.exit_code == 2
    assert "reveni.returns[0]" in result.output and "'accepted' cannot move to 'shipped'" in (
        result.output
    )


def test_demo_exits_1_on_anything_unexpected(monkeypatch: pytest.MonkeyPatch) -> None:
    import returnbridge.demo as demo_module

    def boom(_scenario: object, **_: object) -> DemoRun:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(demo_module, "run_demo", boom)
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 1
    assert "simulated crash" in result.stderr
    assert result.stdout == ""


def test_lost_duplicated_and_reordered_webhooks_change_nothing(
    showcase_run: DemoRun, tmp_path: Path
) -> None:
    """Webhooks only wake the sync; the listing is the backstop, so faulty delivery can neither
    hide nor double an exception or an effect."""
    scenario = unlimited_showcase()
    reveni_faults = scenario.faults.reveni.model_copy(
        update={
            "duplicate_webhook_rate": 0.3,
            "out_of_order_webhook_rate": 0.2,
            "drop_webhook_rate": 0.3,
        }
    )
    faulty = scenario.model_copy(
        update={"faults": scenario.faults.model_copy(update={"reveni": reveni_faults})}
    )
    run = run_demo(faulty, out=tmp_path)
    assert _rows(run.summary) == ALL_EXCEPTIONS
    assert _ground_truth(run.summary) == _ground_truth(showcase_run.summary)


def test_progress_tells_each_step_and_how_centra_paces_it(tmp_path: Path) -> None:
    said: list[str] = []
    run_demo(unlimited_showcase(), out=tmp_path, progress=said.append)
    steps = [line.split(":")[0].split(" done")[0] for line in said]
    assert steps == [
        "Simulators on loopback",
        "Reveni http",
        "Reveni",
        "Sync run 1",
        "Sync run 1",
        "Centra",  # the payment provider answers the refund it left pending
        "Sync run 2",
        "Sync run 2",
        "Centra",  # someone refunds by hand (the after_sync plant)
        "Daily reconciliation",
        "Reconciliation",
        "Month end",  # the clocks move to the 1st, 07:00
        "Month-end report",
    ], said
    assert "payment provider answers 1 refund request(s)" in said[5] and "1 paid" in said[5]
    assert "plan unlimited: no rate limits" in said[0]
    assert said[-3].endswith("7 gaps, 3 digests.")
    assert "e-mail sent" in said[-1]


def test_pacing_names_the_share_of_the_plan_returnbridge_uses() -> None:
    from returnbridge.connectors.centra.settings import CentraSettings
    from returnbridge.demo import pacing
    from returnbridge.settings import Settings

    growth = Settings(centra=CentraSettings(base_url="http://x", plan="growth"))
    assert pacing(growth).startswith(
        "plan growth: returnbridge uses 50% of its limits, 10 writes, 30 requests and 125,000 "
        "query complexity per 10 s"
    )


def test_the_demo_runs_until_no_refund_is_pending_at_an_asynchronous_psp(tmp_path: Path) -> None:
    showcase = builtin_scenario("showcase")
    orders = [o.model_copy(update={"psp": "async"}) for o in showcase.centra.orders]
    centra = showcase.centra.model_copy(update={"orders": orders, "plan": "unlimited"})
    scenario = showcase.model_copy(update={"centra": centra})  # unlimited: not about pacing
    told: list[str] = []
    run = run_demo(scenario, out=tmp_path, progress=told.append)
    assert run.idle
    refunds = [r for r in run.summary["centra"]["refunds"] if r["return_id"] is not None]
    assert refunds and all(r["asynchronous"] for r in refunds if r["via_psp"])
    assert {r["status"] for r in refunds} == {"SUCCESS", "FAILED"}  # nothing left PENDING
    assert any("payment provider answers" in line for line in told)
    # The same exceptions as with synchronous payment providers: waiting changed nothing.
    assert _rows(run.summary) == ALL_EXCEPTIONS


# ---------------------------------------------------------------------------- month-end report


def test_the_month_end_report_reaches_finance_as_an_html_e_mail(showcase_run: DemoRun) -> None:
    import email
    import email.policy

    report = showcase_run.summary["report"]
    # the month closed before the demo ended: the scenario's month, e-mailed once to Finance
    assert report["month"] == "2026-10"
    assert report["sent"] and report["emailed_to"] == ["finance@example.com"]
    assert report["totals"]["balanced"] is True
    assert report["settlement_unmatched"]["new"] == 1
    (raw,) = showcase_run.mails
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Message-ID"] == report["message_id"]
    assert message["To"] == "finance@example.com" and "2026-10" in message["Subject"]
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    cids = {
        str(part["Content-ID"]).strip("<>")
        for part in message.walk()
        if part.get_content_type() == "image/png"
    }
    assert cids and all(f"cid:{cid}" in html.get_content() for cid in cids)
    assert "ret_nf_9999" in html.get_content()
    # no customer's e-mail anywhere (the scenario has them)
    scenario = builtin_scenario("showcase")
    emails = {r.customer_email for r in scenario.reveni.returns if r.customer_email}
    emails |= {o.customer_email for o in scenario.centra.orders}
    text = raw.decode("ascii")
    assert not any(address in text for address in emails)
    assert not any(address in html.get_content() for address in emails)


def test_the_month_end_figures_agree_with_both_simulators(showcase_run: DemoRun) -> None:
    """Money out through the payment provider is Centra's ground truth; Reveni's instant
    refunds in the warehouse are the disbursements on Reveni's own invoice."""
    from returnbridge.monthend.model import InvoiceKind, PaidBy

    assert showcase_run.month_end is not None
    month = showcase_run.month_end.report
    money = {(row.paid_by, row.currency): (row.count, row.minor) for row in month.money_out}
    truth: dict[tuple[PaidBy, str], list[int]] = {}
    for refund in showcase_run.summary["centra"]["refunds"]:
        if not refund["via_psp"]:
            continue
        kind = {"SUCCESS": PaidBy.PSP_SUCCEEDED, "FAILED": PaidBy.PSP_FAILED}.get(
            refund["status"], PaidBy.PSP_PENDING
        )
        entry = truth.setdefault((kind, refund["currency"]), [0, 0])
        entry[0] += 1
        entry[1] += int(Decimal(refund["amount"]) * 100)
    psp = {k: v for k, v in money.items() if k[0].value.startswith("psp_") and v[0]}
    assert psp == {k: tuple(v) for k, v in truth.items()}
    # every refund Reveni paid in the month is a disbursement line on its invoice (a covered
    # one is then credited back by a negative line)
    charged: dict[str, list[int]] = {}
    for line in month.settlement.lines:
        if line.side.value == "disbursement" and line.amount_minor > 0:
            entry = charged.setdefault(line.currency, [0, 0])
            entry[0] += 1
            entry[1] += line.amount_minor
    instant = {c: v for (k, c), v in money.items() if k == PaidBy.REVENI_INSTANT}
    assert instant == {c: tuple(v) for c, v in charged.items()}
    assert month.invoice is not None and any(
        k.kind == InvoiceKind.DISBURSEMENT for k in month.invoice.by_kind
    )
