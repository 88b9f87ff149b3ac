"""Performance benchmarks a user can rerun: ``python -m bench`` lists them, ``python -m bench NAME`` runs one.

Each benchmark prints Markdown tables and records them, dated and with the machine they ran on, in
``bench/RESULTS.md`` (a rerun of the same command replaces its own section). Nothing here is imported by
``dressup/`` or ``study/``, and nothing in ``tests/`` times anything: speed is measured here, behaviour there.
"""
