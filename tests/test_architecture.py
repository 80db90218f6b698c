"""The map in docs/architecture.md stays true: which room may import which, a pure core, and no
pointer to a document outside the repository.

The import check is static: every module's source is parsed and every import it names counts, at
module level or inside a function (a late import is still a dependency). It checks what a module
*names*; a second test imports each core module in a fresh interpreter and checks that no I/O
library was loaded on the way (the packages export their I/O parts lazily for that).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
RULES_DOC = "docs/architecture.md#rooms-and-imports"
FIRST_PARTY = ("returnbridge", "flows", "tasks", "reports")

# Composition roots inside the library: like flows, they wire everything, `reports/` included.
ENTRY_POINTS = frozenset(
    {
        "returnbridge.cli",
        "returnbridge.cli_ops",
        "returnbridge.cli_queue",
        "returnbridge.cli_status",
        "returnbridge.cli_serve",
        "returnbridge.cli_watch",
        "returnbridge.demo",
        "returnbridge.blocks_text",  # Block Kit as terminal text, for the demo's output
        "returnbridge.__main__",
    }
)
# The returnbridge modules outside core/ that core/ may import: plain data, constants and pure
# functions. Each is held to the same purity as core/ itself.
PURE_MODULES = frozenset(
    {
        "returnbridge.clock",
        "returnbridge.ledger.records",
        "returnbridge.connectors.errors",
        "returnbridge.connectors.centra.errors",
        "returnbridge.connectors.centra.inferred",
        "returnbridge.connectors.centra.models",
        "returnbridge.connectors.centra.plans",
        "returnbridge.connectors.centra.refunds",
        "returnbridge.connectors.reveni.encoding",
        "returnbridge.connectors.reveni.errors",
        "returnbridge.connectors.reveni.inferred",
        "returnbridge.connectors.reveni.models",
        "returnbridge.connectors.reveni.statuses",
        "returnbridge.connectors.reveni.wire",
    }
)
# What a pure module may import from outside returnbridge: computation only, no network, files,
# processes, databases, clocks or sleeps.
PURE_LIBRARIES = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "contextlib",
        "copy",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "math",
        "numbers",
        "operator",
        "re",
        "statistics",
        "string",
        "textwrap",
        "types",
        "typing",
        "unicodedata",
        "zoneinfo",
        "pydantic",  # the data models' validation; no I/O
    }
)
# Named exceptions to PURE_LIBRARIES, each with its reason.
PURE_EXTRAS: dict[str, frozenset[str]] = {
    # `asyncio.sleep` and `time.monotonic` for the real clocks
    "returnbridge.clock": frozenset({"asyncio", "time"}),
    "returnbridge.connectors.errors": frozenset({"time", "email.utils"}),  # parse Retry-After
}
LIBRARY_ROOMS = frozenset(
    {
        "returnbridge",  # the package itself
        "clock",
        "lazy",
        "connectors",
        "core",
        "ledger",
        "monthend",
        "receiver",
        "reconcile",
        "scenario",
        "settings",
        "simulators",
        "sync",
        "watch",
    }
)
# room -> the rooms it may import (besides the standard library and third-party packages).
ALLOWED: dict[str, frozenset[str]] = {
    "flows": frozenset({"flows", "tasks", "reports"} | LIBRARY_ROOMS),
    "tasks": frozenset({"tasks"} | LIBRARY_ROOMS),
    "reports": frozenset({"reports"} | LIBRARY_ROOMS),
    "entry": frozenset({"entry", "reports"} | LIBRARY_ROOMS),
    "returnbridge": frozenset(),
    "clock": frozenset({"clock"}),
    "lazy": frozenset({"lazy"}),  # the packages' lazy exports; imports nothing of ours
    "connectors": frozenset({"connectors", "clock", "lazy"}),
    "ledger": frozenset({"ledger", "core", "clock", "lazy"}),
    "sync": frozenset({"sync", "core", "connectors", "ledger", "clock", "settings"}),
    "reconcile": frozenset(
        {"reconcile", "sync", "core", "connectors", "ledger", "clock", "settings"}
    ),
    "receiver": frozenset({"receiver", "core", "connectors", "ledger", "clock", "settings"}),
    # the month-end report reads the warehouse (reconcile/) and the ledger; never the sync
    "monthend": frozenset(
        {"monthend", "reconcile", "core", "connectors", "ledger", "clock", "settings"}
    ),
    # the watchdog reads the ledger and probes the APIs; it never runs the sync or reconciles
    "watch": frozenset({"watch", "core", "connectors", "ledger", "clock", "settings"}),
    "simulators": frozenset({"simulators", "connectors", "scenario", "clock"}),
    "scenario": frozenset({"scenario", "connectors"}),  # the simulators read scenarios, not back
}
# Why a wall is there, for the failure message (room -> target room -> reason).
WHY: dict[tuple[str, str], str] = {
    ("sync", "reconcile"): "sync/ never imports reconcile/ (the reconciliation fixes through the "
    "sync, not the other way round)",
}
PREFECT_ROOMS = frozenset({"flows", "tasks", "entry"})


@dataclass(frozen=True)
class Import:
    line: int
    name: str  # absolute dotted name, as written (module, or module.attribute)


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party_files() -> Iterator[Path]:
    for top in FIRST_PARTY:
        yield from sorted((ROOT / top).rglob("*.py"))


MODULES = frozenset(module_of(path) for path in first_party_files())


def imports_in(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import `source` names, anywhere in it, relative ones made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found += [
                Import(node.lineno, base if alias.name == "*" else f"{base}.{alias.name}")
                for alias in node.names
            ]
    return found


def resolve(name: str, modules: frozenset[str] = MODULES) -> str:
    """The first-party module `name` refers to (the longest known prefix), or `name` itself."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def room_of(module: str) -> str | None:
    """The room of a first-party module; None for anything else."""
    parts = module.split(".")
    if parts[0] in ("flows", "tasks", "reports"):
        return parts[0]
    if parts[0] != "returnbridge":
        return None
    if module in ENTRY_POINTS:
        return "entry"
    if len(parts) == 1:
        return "returnbridge"
    return "scenario" if parts[1] == "scenarios" else parts[1]


def _matches(name: str, allowed: frozenset[str]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


def _pure_rule(module: str, target: str) -> str | None:
    """Why `module` (core/ or a pure module) may not import first-party `target`, if so."""
    if room_of(target) == "core" or target in PURE_MODULES:
        return None
    return (
        "core/ must stay pure: it may import only returnbridge.core, returnbridge.clock, the "
        "connectors' data modules and returnbridge.ledger.records"
    )


def _settings_rule(target: str) -> str | None:
    if target.endswith(".settings"):
        return None
    return "returnbridge/settings.py gathers the rooms' settings modules only"


def _room_rule(room: str, target: str) -> str | None:
    target_room = room_of(target)
    assert target_room is not None
    if target_room in ALLOWED[room]:
        return None
    if target_room == "flows":
        return "nothing imports flows/ (they are entry points)"
    if target_room == "tasks":
        return "only flows/ import tasks/"
    if target_room == "reports" and room in LIBRARY_ROOMS:
        return "the library never imports reports/ (an entry point hands the renderer in)"
    if target_room == "entry":
        return "nothing imports the entry points (cli, cli_ops, demo, __main__)"
    why = WHY.get((room, target_room))
    if why:
        return why
    return f"{room}/ may import only {', '.join(sorted(ALLOWED[room]))}"


def violations_of(
    module: str,
    source: str,
    *,
    path: str | None = None,
    is_package: bool = False,
    modules: frozenset[str] = MODULES,
) -> list[str]:
    """Every import of `module` (given its source) that breaks the map, as a readable line."""
    where = path or module.replace(".", "/") + ".py"
    room = room_of(module)
    if room is None:
        return []
    if room not in ALLOWED and room not in ("core", "settings"):
        return [f"{where}: room {room!r} has no import rule yet: add it to {RULES_DOC}"]
    pure = room == "core" or module in PURE_MODULES
    problems: list[str] = []
    for imp in imports_in(source, module, is_package=is_package):
        target = resolve(imp.name, modules)
        reason: str | None
        if room_of(target) is None:  # the standard library or a third-party package
            if pure:
                extras = PURE_EXTRAS.get(module, frozenset())
                ok = _matches(imp.name, PURE_LIBRARIES | extras)
                reason = None if ok else "core/ must stay pure"
                if reason and room != "core":
                    reason = f"{module} is one of the pure modules core/ imports"
            elif _matches(imp.name, frozenset({"prefect"})) and room not in PREFECT_ROOMS:
                reason = "only flows/, tasks/ and the entry points import Prefect"
            else:
                reason = None
        elif pure:
            reason = _pure_rule(module, target)
        elif room == "settings":
            reason = _settings_rule(target)
        else:
            reason = _room_rule(room, target)
        if reason:
            problems.append(f"{where}:{imp.line} imports {imp.name}: {reason} ({RULES_DOC})")
    return problems


def test_rooms_import_only_what_the_map_allows() -> None:
    problems = [
        problem
        for path in first_party_files()
        for problem in violations_of(
            module_of(path),
            path.read_text(encoding="utf-8"),
            path=str(path.relative_to(ROOT)),
            is_package=path.name == "__init__.py",
        )
    ]
    assert not problems, "\n".join(problems)


# Libraries importing core/ must not load, even through a package's __init__.py. (The standard
# library's `email.utils`, which parses Retry-After, imports `socket` without using it.)
IO_LIBRARIES = (
    "httpx",
    "sqlalchemy",
    "duckdb",
    "polars",
    "prefect",
    "slack_sdk",
    "graphql",
    "asyncio",
    "subprocess",
    "psycopg",
    "psycopg2",
)


def test_importing_core_loads_no_io_library() -> None:
    core = sorted(m for m in MODULES if room_of(m) == "core")
    assert len(core) >= 5
    probe = (
        "import importlib, json, sys\n"
        f"for name in {core!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {IO_LIBRARIES!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = json.loads(done.stdout)
    assert loaded == [], f"importing core/ loaded {loaded} ({RULES_DOC})"


def test_the_lazy_exports_still_resolve() -> None:
    from returnbridge import ledger
    from returnbridge.connectors import centra, reveni

    for package in (centra, reveni, ledger):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchThing'"):
        _ = centra.NoSuchThing


def test_the_pure_modules_exist() -> None:
    missing = sorted((PURE_MODULES | PURE_EXTRAS.keys() | ENTRY_POINTS) - MODULES)
    assert not missing, f"listed in tests/test_architecture.py but not in the code: {missing}"


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "returnbridge.core.fake",
            "import httpx\n",
            "returnbridge/core/fake.py:1 imports httpx: core/ must stay pure "
            "(docs/architecture.md#rooms-and-imports)",
        ),
        (
            "returnbridge.core.fake",
            "def late():\n    from returnbridge.ledger.store import Ledger\n",
            "returnbridge/core/fake.py:2 imports returnbridge.ledger.store.Ledger: core/ must stay",
        ),
        (
            "returnbridge.core.fake",
            "from ..ledger import Ledger\n",
            "imports returnbridge.ledger.Ledger: core/ must stay pure",
        ),
        (
            "returnbridge.core.fake",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlalchemy\n",
            "returnbridge/core/fake.py:3 imports sqlalchemy: core/ must stay pure",
        ),
        (
            "returnbridge.connectors.reveni.models",
            "import os\n",
            "imports os: returnbridge.connectors.reveni.models is one of the pure modules",
        ),
        (
            "returnbridge.sync.fake",
            "from returnbridge.reconcile.run import Reconciliation\n",
            "sync/ never imports reconcile/",
        ),
        (
            "returnbridge.reconcile.fake",
            "from reports.digest import render_digest\n",
            "the library never imports reports/",
        ),
        (
            "returnbridge.connectors.reveni.fake",
            "from returnbridge.ledger import Ledger\n",
            "connectors/ may import only clock, connectors",
        ),
        (
            "returnbridge.ledger.fake",
            "from returnbridge.connectors.centra.client import CentraClient\n",
            "ledger/ may import only clock, core, lazy, ledger",
        ),
        (
            "returnbridge.simulators.fake",
            "from returnbridge.sync.run import ReturnSync\n",
            "simulators/ may import only",
        ),
        ("returnbridge.receiver.fake", "import tasks.budget\n", "only flows/ import tasks/"),
        ("tasks.fake", "from flows.sync_returns import sync_returns\n", "nothing imports flows/"),
        (
            "returnbridge.sync.fake",
            "from prefect import task\n",
            "only flows/, tasks/ and the entry points import Prefect",
        ),
        (
            "returnbridge.settings",
            "from returnbridge.sync.run import ReturnSync\n",
            "gathers the rooms' settings modules only",
        ),
        ("returnbridge.newroom", "x = 1\n", "room 'newroom' has no import rule yet"),
    ],
)
def test_the_check_catches_a_wrong_import(module: str, source: str, expected: str) -> None:
    problems = violations_of(module, source, modules=MODULES | {module})
    assert len(problems) == 1 and expected in problems[0], problems


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("returnbridge.core.fake", "from returnbridge.connectors.reveni.statuses import ACCEPTED"),
        ("returnbridge.core.fake", "from returnbridge.ledger.records import ActionRecord"),
        ("returnbridge.reconcile.fake", "from returnbridge.sync.run import ReturnSync"),
        ("returnbridge.cli_ops", "def late():\n    from reports.digest import render_digest"),
        ("flows.fake", "from tasks.budget import PrefectBudgetGate\nfrom prefect import flow"),
        ("returnbridge.simulators.fake", "from returnbridge.connectors.centra.inferred import X"),
    ],
)
def test_the_check_lets_an_allowed_import_pass(module: str, source: str) -> None:
    assert violations_of(module, source, modules=MODULES | {module}) == []


# ------------------------------------------------------------------ pointers that stay inside

# Documents that were never part of the repository (spelled so this file does not match itself).
OUTSIDE = re.compile(
    r"\b(?:design|contract|style)\.md\b"
    r"|\breference/[\w-]+\.md\b"
    r"|\.\./shared\b"
    r"|\u00a7"  # a numbered section: the repository's documents have none
)
TEXT_SUFFIXES = frozenset({".py", ".md", ".graphql", ".yaml", ".yml", ".toml", ".cfg", ".ini"})
SKIPPED_DIRS = frozenset({".venv", ".git", ".prefect", "node_modules", "__pycache__"})


def _skipped(folder: Path, name: str) -> bool:
    return (
        name in SKIPPED_DIRS
        or name.endswith((".egg-info", "_cache"))
        or (folder == ROOT and name == "data")  # the ledger and warehouse of local runs
    )


def repository_text_files() -> Iterator[Path]:
    """The repository's own text files (not the venv, caches, build output or local data)."""
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not _skipped(here, d))
        for name in sorted(files):
            path = here / name
            if path.suffix in TEXT_SUFFIXES and path != Path(__file__).resolve():
                yield path


def test_no_file_points_to_a_document_outside_the_repository() -> None:
    dangling = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
        for path in repository_text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not dangling, (
        "point to docs/architecture.md#<section> (or another document in docs/) instead:\n"
        + "\n".join(dangling)
    )


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_cited_architecture_section_exists() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    anchors = {_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}
    cited = re.compile(r"architecture\.md#([\w-]+)|\]\(#([\w-]+)\)")
    missing = [
        f"{path.relative_to(ROOT)}:{number}: #{anchor}"
        for path in repository_text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for match in cited.finditer(line)
        if (path == ARCHITECTURE or match.group(1))
        and (anchor := match.group(1) or match.group(2)) not in anchors
    ]
    assert not missing, "no such section in docs/architecture.md:\n" + "\n".join(missing)
