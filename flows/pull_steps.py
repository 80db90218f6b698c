"""The pull step of every deployment in `prefect.yaml`
(docs/architecture.md#deployments-and-scale-out).

A worker runs each flow run in a fresh temporary directory; the run must work in returnbridge's
project directory instead, where `flows/` (the entrypoints) and `data/` (the default SQLite
ledger, the warehouse, the reports) are. That is the checkout the worker's returnbridge is
installed from (`make install` in a clone, then `prefect worker start` from its venv), or the
directory `RETURNBRIDGE_HOME` names. Unlike a fixed path written into the deployment when it was
created, this holds on every worker, wherever its clone is.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "RETURNBRIDGE_HOME"


class ProjectHomeError(RuntimeError):
    """No returnbridge project directory to run in; the message says how to name one."""


def project_home(environ: dict[str, str] | None = None) -> Path:
    """`RETURNBRIDGE_HOME` when set, else the checkout this returnbridge is installed from."""
    env = os.environ if environ is None else environ
    named = env.get(HOME_VARIABLE, "").strip()
    if named:
        home = Path(named).expanduser().resolve()
        where = f"{HOME_VARIABLE}={named}"
    else:
        home = Path(__file__).resolve().parent.parent
        where = f"the checkout returnbridge is installed from ({home})"
    if not (home / "flows" / "sync_returns.py").is_file() or not (home / "prefect.yaml").is_file():
        raise ProjectHomeError(
            f"{where} is not a returnbridge project directory (no flows/ and prefect.yaml): "
            f"install returnbridge on the worker from a clone (`make install`), or set "
            f"{HOME_VARIABLE} to such a clone"
        )
    return home


def enter_project_home() -> dict[str, str]:
    """Change into the project directory; Prefect keeps the returned `directory` as the step's
    output."""
    home = project_home()
    os.chdir(home)
    return {"directory": str(home)}
