"""Benchmarks: Stepwise measured side by side with PostgreSQL's own limit, a peer engine and a bare route.

Not tests: nothing in ``make test`` depends on speed. ``make bench`` (``python -m bench``) runs them all
and ends with one ``target: NAME measured=X goal=Y PASS|MISS`` line per target; each module runs
alone too, e.g. ``python -m bench.engine_throughput --instances 200``. Every benchmark creates and
drops its own PostgreSQL database on the server at ``STEPWISE_BENCH_PG_URL`` (default: the local one).
"""
