"""CPU cost that does not drift: instructions per request and per transition, counted by callgrind.

Wall-clock figures on a shared 2-core machine move ±40% between runs (docs/performance.md), which
hides a 10% improvement. Valgrind's callgrind counts the instructions a process executes, which is
the same from run to run whatever else the machine is doing. So a lever is judged here first:

* ``me`` — ``{ me { id } }``: what every request costs (HTTP, authentication, one statement);
* ``inbox`` — the inbox page of bench.inbox_scaling (50 tasks with assignee and step);
* ``step`` — ``stepInstance { metrics }`` of bench.inbox_scaling;
* ``transition`` — the approval workload of bench.engine_throughput, one driver, per transition
  (N units = N instances of three transitions each);
* ``keyed`` — the same with an idempotency key on every transition (bench.engine_throughput's keys
  cost), per transition;
* ``quorum`` — the quorum approval workload (two of three approvers), per instance: its bench
  compares instances/s with the plain workload's (whose instance is three ``transition``).

Each is run in a child process under callgrind twice, with N units and with none after the same
warm-up; the difference divided by N is the cost of one unit (start-up and imports cancel out).
Requests go through the real app in-process (ASGI, embedded worker off); the database is PostgreSQL.
``--source DIR`` counts another checkout's engine/schema/server (``git worktree add DIR REV``) on
the same seeded database, to compare two revisions. Needs Debian's ``valgrind``; takes 3–4 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ROOT, heading, line_buffered, print_environment, sqlalchemy_url, temporary_database
from bench.seed import seed_inbox_alone
from bench.workload import TRANSITIONS_PER_INSTANCE, prepare_engine

UNITS = {"me": "request", "inbox": "request", "step": "request", "transition": "transition",
         "keyed": "transition", "quorum": "instance"}  # fmt: skip
ENGINE_UNITS = ("transition", "keyed", "quorum")
# A workload instance is TRANSITIONS_PER_INSTANCE transitions: the child runs N instances for N units.
WARM_UP = 10


def count(source: Path, what: str, units: int, url: str, step_id: str) -> int:
    """Instructions of one child run under callgrind: this checkout's bench/, ``source``'s engine/schema/server."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
               "bench.instructions", "--child", what, str(units), url, step_id]  # fmt: skip
    with tempfile.TemporaryDirectory() as path:
        (Path(path) / "bench").symlink_to(ROOT / "bench")
        env = {**os.environ, "PYTHONPATH": f"{path}{os.pathsep}{source}", "PYTHONHASHSEED": "0"}
        result = subprocess.run(command, env=env, cwd=path, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"child {what} {units} failed ({result.returncode}): {result.stderr[-2000:]}")
    return int(found.group(1))


async def run(source: Path, units: int, measured: list[str]) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    await print_environment({"counted": f"engine/schema/server from {source}"})
    heading(f"instructions per unit (callgrind): {units} units minus none, after {WARM_UP} warm-up units")
    async with temporary_database("instructions") as dsn:
        step_id = ""
        if any(what not in ENGINE_UNITS for what in measured):  # the engine's units need no inbox
            step_id = (await seed_inbox_alone(dsn, 10_000)).viewer_step_ids[0]
        engine = await prepare_engine(sqlalchemy_url(dsn))  # the workload's users and definitions
        await engine.db.dispose()
        url = sqlalchemy_url(dsn)
        runs = [(what, n) for what in measured for n in (0, units)]
        with ThreadPoolExecutor(max_workers=2) as pool:  # one child per core
            counted = dict(zip(runs, pool.map(lambda r: count(source, r[0], r[1], url, step_id), runs), strict=True))
    for what in measured:
        unit = UNITS[what]
        per_unit = (counted[(what, units)] - counted[(what, 0)]) / units
        if what in ("transition", "keyed"):
            per_unit /= TRANSITIONS_PER_INSTANCE
        print(f"{what:<11} {per_unit / 1e6:8.2f} M instructions per {unit}")


async def child(what: str, units: int, url: str, step_id: str) -> None:
    """What one callgrind run executes: warm-up, then ``units`` more of ``what``."""
    if what in ENGINE_UNITS:
        from bench.workload import run_quorum, run_stepwise
        from engine.catalog import default_registry
        from engine.storage.database import Database
        from engine.transitions.engine import Engine

        engine = Engine(Database(url), default_registry())
        try:
            for count in (WARM_UP, units):
                if count and what == "quorum":
                    await run_quorum(engine, count, 1)
                elif count:
                    await run_stepwise(engine, count, 1, keyed=what == "keyed")
        finally:
            await engine.db.dispose()
        return
    import httpx

    from bench.inbox_scaling import INBOX_QUERY, SECRET, STEP_QUERY, bearer
    from bench.seed import VIEWER, VIEWER_ROLE
    from server.app import create_app
    from server.settings import Settings

    bodies = {
        "me": {"query": "{ me { id } }"},
        "inbox": {"query": INBOX_QUERY, "variables": {"role": VIEWER_ROLE}},
        "step": {"query": STEP_QUERY, "variables": {"id": step_id}},
    }
    settings = Settings(
        database_url=url, secret_key=SECRET, files_dir=Path("/tmp/stepwise-bench"), embedded_worker=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        # One token for the run, as a client keeps it: signing one per request counted the client's
        # Settings and JWT encoding as the server's cost, and they differ between the revisions compared.
        headers = bearer(VIEWER)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(WARM_UP + units):
                response = await client.post("/graphql", json=bodies[what], headers=headers)
                if response.status_code != 200 or response.json().get("errors"):
                    raise RuntimeError(response.text[:300])


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--units", type=int, default=30, help="requests (or transitions) counted per figure")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose engine/schema/server to count")
    parser.add_argument("--only", choices=list(UNITS), action="append", help="count only these (repeatable)")
    parser.add_argument("--child", nargs=4, metavar=("WHAT", "UNITS", "URL", "STEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, units, url, step_id = args.child
        asyncio.run(child(what, int(units), url, step_id))
    else:
        asyncio.run(run(args.source.resolve(), args.units, args.only or list(UNITS)))


if __name__ == "__main__":
    main()
