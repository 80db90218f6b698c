"""The runbook covers the exception vocabulary exactly, with the right owner for each code."""

from __future__ import annotations

import re
from pathlib import Path

from returnbridge.core.codes import CODES

RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"
HEADING = re.compile(r"^### `(\w+)` — (\w+)", re.MULTILINE)


def test_every_code_has_one_runbook_section_naming_its_owner() -> None:
    sections = HEADING.findall(RUNBOOK.read_text(encoding="utf-8"))
    documented = {code: owner.lower() for code, owner in sections}
    assert len(documented) == len(sections), "a code is documented twice"
    assert documented == {code: c.owner.value for code, c in CODES.items()}
