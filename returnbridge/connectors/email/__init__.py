"""E-mail: SMTP delivery of the month-end report (docs/architecture.md#the-month-end-report)."""
