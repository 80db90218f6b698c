"""The month-end report (docs/architecture.md#the-month-end-report)."""
