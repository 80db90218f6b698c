"""The near-real-time sync (docs/architecture.md#the-sync-pipeline), one module a job:

run.py        one run: collect → read → plan → record → execute (in rounds) → commit
executor.py   the executor: schedules the due ledger actions, leases and claims them
session.py    one executor run's working state: its budget slots, claims and backoffs
calls.py      how each action kind is sent to Centra (the Centra calls per kind)
readback.py   how each action kind is read back from Centra (an uncertain write's proof)
outcomes.py   the action state machine: done / failed / in doubt / blocked, and the exceptions
report.py     the executor's settings and its report
budget.py     Centra's budget shared across processes (the gate before each call)
settings.py   the sync's settings section
runtime.py    the wiring: clients, ledger, planner and executor from the settings
"""
