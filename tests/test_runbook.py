"""The runbook covers the exception vocabulary exactly: one entry per code, under the code's own
anchor (the digests and `exceptions show` link to `runbook.md#<code>`), headed by the code's plain
title and its owner. Every anchor a file of the repository cites in the people's documents exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from returnbridge.core.codes import CODES, TITLES
from returnbridge.ledger.queue import MONEY_RETRY_CODES

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "docs" / "runbook.md"
# `### Plain title (`code`) — Owner`
HEADING = re.compile(r"^### (.+?) \(`(\w+)`\) — (\w+)", re.MULTILINE)
PARTS = ("**What happened.**", "**What to do.**", "**Who to contact.**", "**How it closes.**")
ANCHOR = re.compile(r"""<a\s+(?:id|name)="([^"]+)"\s*>\s*</a>""")


def _sections(text: str) -> dict[str, str]:
    """Each code's entry: from its heading to the next heading of level 2 or 3."""
    parts = re.split(r"^(?=#{2,3} )", text, flags=re.MULTILINE)
    out: dict[str, str] = {}
    for part in parts:
        match = HEADING.match(part)
        if match:
            out[match.group(2)] = part
    return out


def test_every_code_has_one_runbook_section_naming_its_owner() -> None:
    sections = HEADING.findall(RUNBOOK.read_text(encoding="utf-8"))
    documented = {code: owner.lower() for _, code, owner in sections}
    assert len(documented) == len(sections), "a code is documented twice"
    assert documented == {code: c.owner.value for code, c in CODES.items()}


def test_every_heading_is_the_codes_plain_title() -> None:
    sections = HEADING.findall(RUNBOOK.read_text(encoding="utf-8"))
    wrong = [(code, title, TITLES[code]) for title, code, _ in sections if title != TITLES[code]]
    assert not wrong, f"heading title differs from codes.TITLES: {wrong}"


def test_every_code_has_its_anchor_right_before_its_heading() -> None:
    lines = RUNBOOK.read_text(encoding="utf-8").splitlines()
    anchors = [m.group(1) for line in lines for m in ANCHOR.finditer(line)]
    assert len(anchors) == len(set(anchors)), "an anchor is defined twice"
    for code in CODES:
        assert code in anchors, f'runbook.md has no <a id="{code}"></a>'
    for number, line in enumerate(lines):
        match = HEADING.match(line)
        if match:
            before = [x for x in lines[:number] if x.strip()][-1]
            assert before.strip() == f'<a id="{match.group(2)}"></a>', (
                f"the anchor of {match.group(2)} is not right before its heading"
            )


def test_every_entry_says_what_happened_what_to_do_who_and_how_it_closes() -> None:
    sections = _sections(RUNBOOK.read_text(encoding="utf-8"))
    for code, text in sections.items():
        for part in PARTS:
            assert part in text, f"{code}: no {part}"


def test_money_moving_retries_say_they_need_confirmation() -> None:
    sections = _sections(RUNBOOK.read_text(encoding="utf-8"))
    for code, text in sections.items():
        marked = "Retry needs confirmation" in " ".join(text.split())
        assert marked == (code in MONEY_RETRY_CODES), (
            f"{code}: 'Retry needs confirmation' {'missing' if not marked else 'not expected'}"
        )


# ----------------------------------------------------------- anchors cited in the people's docs

# The documents whose anchors are checked here (docs/architecture.md's are checked by
# tests/test_architecture.py).
DOCS = {
    "README.md": ROOT / "README.md",
    "runbook.md": RUNBOOK,
    "operating-guide.md": ROOT / "docs" / "operating-guide.md",
    "on-call.md": ROOT / "docs" / "on-call.md",
    "components.md": ROOT / "docs" / "components.md",
    "settings.md": ROOT / "docs" / "settings.md",
}
TEXT_SUFFIXES = frozenset({".py", ".md", ".yaml", ".yml", ".toml"})
SKIPPED_DIRS = frozenset({".venv", ".git", ".prefect", "node_modules", "__pycache__", "data"})


def _github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)  # not in code blocks
    headings = {_github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}
    return headings | set(ANCHOR.findall(text))


def _text_files() -> Iterator[Path]:
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIPPED_DIRS and not d.endswith((".egg-info", "_cache"))
        )
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix in TEXT_SUFFIXES:
                yield path


def test_every_cited_anchor_of_the_peoples_docs_exists() -> None:
    anchors = {name: anchors_of(path) for name, path in DOCS.items() if path.exists()}
    cited = re.compile(r"\b([\w-]+\.md)#([\w-]+)")
    own = re.compile(r"\]\(#([\w-]+)\)")
    missing: list[str] = []
    for path in _text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            for match in cited.finditer(line):
                doc, anchor = match.group(1), match.group(2)
                if doc in DOCS and anchor not in anchors.get(doc, set()):
                    missing.append(f"{where}: {doc}#{anchor}")
            if path in DOCS.values():
                for match in own.finditer(line):
                    if match.group(1) not in anchors[path.name]:
                        missing.append(f"{where}: #{match.group(1)}")
    assert not missing, "no such anchor:\n" + "\n".join(missing)


def test_the_anchor_the_code_cites_for_closing_entries_exists() -> None:
    assert "how-entries-close" in anchors_of(RUNBOOK)
