"""Built-in scenario files, loadable by name (`builtin_scenario("basic")`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from returnbridge.scenario import Scenario, load_scenario


def builtin_scenario_path(name: str) -> Path:
    """Path of the built-in scenario `name` (a YAML file shipped in this package)."""
    path = Path(str(resources.files(__package__).joinpath(f"{name}.yaml")))
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"no built-in scenario {name!r}; available: {available}")
    return path


def builtin_scenario(name: str) -> Scenario:
    """Load and validate the built-in scenario `name`."""
    return load_scenario(builtin_scenario_path(name))
