"""The near-real-time sync: collect → read → plan → record → execute → commit (`run.py`), the
executor that sends each planned Centra effect once (`executor.py`), how an uncertain write is
settled by reading Centra back (`readback.py`), Centra's budget across processes (`budget.py`),
its settings and its wiring (`settings.py`, `runtime.py`). See docs/architecture.md."""
