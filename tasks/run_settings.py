"""The settings a flow run works with (docs/architecture.md#deployments-and-scale-out).

On a worker machine the settings should not live in the worker's shell: `returnbridge prefect
setup --env-file F` stores them (secrets included) in a Prefect Secret block, encrypted by the
server, and every run reads that block at its start. The block's name is
`returnbridge-settings`, or what `RETURNBRIDGE_PREFECT_SETTINGS_BLOCK` says.

Precedence, highest first: the run's environment (a deployment's `job_variables.env`, the
worker's shell, `returnbridge serve`'s shell), then the block, then `.env` and the defaults. A
variable already set is never overwritten, so one worker can still differ on purpose.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from prefect.blocks.system import Secret

from returnbridge.settings import Settings, load_settings

DEFAULT_BLOCK = "returnbridge-settings"
BLOCK_VARIABLE = "RETURNBRIDGE_PREFECT_SETTINGS_BLOCK"

log = logging.getLogger(__name__)


class SettingsBlockError(ValueError):
    """The settings block holds something that is not RETURNBRIDGE_* settings."""


def apply_block_values(values: object, environ: dict[str, str] | None = None) -> list[str]:
    """Put the block's RETURNBRIDGE_* values into `environ` (os.environ by default) where the
    variable is not set yet; returns the keys applied."""
    target = os.environ if environ is None else environ
    if not isinstance(values, Mapping):
        raise SettingsBlockError(
            "the settings block must hold a JSON object of RETURNBRIDGE_* -> value, "
            f"not {type(values).__name__}"
        )
    applied = []
    for key, value in values.items():
        if not isinstance(key, str) or not key.startswith("RETURNBRIDGE_"):
            raise SettingsBlockError(f"the settings block holds {key!r}, not a RETURNBRIDGE_* key")
        if key in target:
            continue
        target[key] = value if isinstance(value, str) else str(value)
        applied.append(key)
    return applied


async def run_settings() -> Settings:
    """The settings for this run: the environment, then the Prefect settings block (when the
    server has one), then `.env` and the defaults."""
    name = os.environ.get(BLOCK_VARIABLE, DEFAULT_BLOCK)
    try:
        block = await Secret.aload(name)
    except ValueError:
        if BLOCK_VARIABLE in os.environ:  # named on purpose: its absence is a fault
            raise SettingsBlockError(
                f"{BLOCK_VARIABLE}={name!r}, but the Prefect server has no Secret block of that "
                "name (create it with `returnbridge prefect setup --env-file FILE`)"
            ) from None
        block = None
    if block is not None:
        applied = apply_block_values(block.get())
        log.info("settings: %d from the Prefect Secret block %r", len(applied), name)
    return load_settings()
