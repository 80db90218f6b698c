"""returnbridge's domain core: plain functions over data, no I/O and no Prefect.

Flows and the CLI fetch data through the connectors, call into here, and persist or report what
comes back (docs/architecture.md#rooms-and-imports)."""
