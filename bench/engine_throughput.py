"""1. Engine throughput against the physical limit: the approval workload vs pgbench, same run, same server.

Stepwise: ``--instances`` approval instances (3 committed transitions each) from 1 and from 16
concurrent in-process drivers. pgbench: a transaction of the same shape (one INSERT of a ~500-byte
JSONB row + one UPDATE of a row by key), ``-M prepared``, at c=1 and c=16. Each concurrency runs in
rounds, a Stepwise run and a pgbench run for as long (at least a few seconds) side by side, which of
the two goes first alternating; the ratio is the median of the rounds' ratios (this shared host's
speed moves for seconds at a time). Targets: transitions/s ≥ 0.5× pgbench's tps at c=1, ≥ 0.25× at
c=16.

Then idempotency keys' cost: the same workload at c=16 with every transition sent with a
key of its own against none, in many short rounds, each a run without keys and a run with them
back to back, which goes first alternating; the median of the rounds' rate with keys over the rate
without must be ≥ 0.9 (a key costs at most 10%). Short pairs keep both halves of a ratio in the
same second of this shared host's drifting speed, and the median of many sheds the pairs a drift
split; the spread (quartiles) is printed beside it.

Then a quorum approval (three approvers, two required, the starter excluded, each
decision through the task service) against the plain approval workload, instances/s at c=16 in
alternating rounds on the same engine; the median of the rounds' ratio must be ≥ 0.7.
"""

from __future__ import annotations

import asyncio
import glob
import json
import math
import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.common import (
    Target,
    heading,
    instance_counts,
    line_buffered,
    print_environment,
    print_targets,
    sqlalchemy_url,
    temporary_database,
)
from bench.workload import TRANSITIONS_PER_INSTANCE, Run, prepare_engine, run_quorum, run_stepwise
from engine.transitions.engine import Engine

NAME = "engine_throughput"
GOALS = {1: 0.5, 16: 0.25}
KEYS_GOAL = 0.9
QUORUM_GOAL = 0.7
ROUNDS = 3
KEY_ROUNDS = 12
PGBENCH_ROWS = 100_000
# A task-like document of ~500 bytes, as the INSERT's JSONB value.
DOCUMENT = json.dumps(
    {
        "title": "Approve Invoice: INV-2026-0001",
        "description": "Review INV-2026-0001 for alice",
        "schemaType": "userTask.approval",
        "assignedRole": "approver",
        "status": "PENDING",
        "priority": "high",
        "input": {"entityType": "Invoice", "entityName": "INV-2026-0001", "amount": 1250.5, "currency": "EUR"},
        "output": None,
        "tokens": [{"id": "0193f2c4-7a1e-7c3d-9b2a-5e8f0a1b2c3d", "nodeId": "approvalDecision"}],
        "createdAt": "2026-01-05T09:00:00+00:00",
        "updatedAt": "2026-01-05T09:00:00+00:00",
        "startedBy": "alice",
        "note": "x" * 70,
    },
    separators=(",", ": "),  # a colon before a name would be a pgbench variable
)
PGBENCH_SCRIPT = f"""\\set id random(1, {PGBENCH_ROWS})
BEGIN;
INSERT INTO pgb_rows (doc) VALUES ('{DOCUMENT}'::jsonb);
UPDATE pgb_instances SET revision = revision + 1, updated_at = now() WHERE id = :id;
END;
"""


def pgbench_path() -> str:
    found = shutil.which("pgbench") or max(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), default=None)
    if found is None:
        raise RuntimeError("pgbench not found: it comes with PostgreSQL's client package (postgresql-client)")
    return found


@dataclass(frozen=True)
class PgbenchRun:
    clients: int
    seconds: int
    transactions: int
    tps: float
    latency_ms: float


async def prepare_pgbench_tables(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """
            CREATE TABLE pgb_rows (id bigserial PRIMARY KEY, doc jsonb NOT NULL);
            CREATE TABLE pgb_instances (id integer PRIMARY KEY, revision integer NOT NULL, updated_at timestamptz);
            """
        )
        await connection.execute(
            f"INSERT INTO pgb_instances SELECT g, 0, now() FROM generate_series(1, {PGBENCH_ROWS}) g"
        )
        await connection.execute("VACUUM ANALYZE pgb_instances")
    finally:
        await connection.close()


def run_pgbench(binary: str, dsn: str, script: Path, clients: int, seconds: int) -> PgbenchRun:
    threads = min(clients, 2)
    command = [binary, "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads), "-T", str(seconds)]
    command += ["-f", str(script), "-d", dsn]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed ({result.returncode}): {result.stderr.strip()}")
    out = result.stdout
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    if not (tps and done and latency):
        raise RuntimeError(f"cannot read pgbench's output:\n{out}")
    return PgbenchRun(clients, seconds, int(done.group(1)), float(tps.group(1)), float(latency.group(1)))


def describe(run: Run) -> str:
    return (
        f"stepwise  drivers={run.drivers:<2} instances={run.instances} "
        f"transitions={run.instances * run.transitions_per_instance} "
        f"seconds={run.seconds:.2f} instances/s={run.instances_per_second:.1f} "
        f"transitions/s={run.transitions_per_second:.1f} "
        f"mean transition latency={run.drivers * 1000 / run.transitions_per_second:.2f} ms"
    )


def describe_pgbench(pg: PgbenchRun) -> str:
    return (
        f"pgbench   clients={pg.clients:<2} seconds={pg.seconds} transactions={pg.transactions} "
        f"tps={pg.tps:.1f} latency={pg.latency_ms:.2f} ms"
    )


async def run(instances_c1: int, instances_c16: int, min_seconds: int = 3) -> list[Target]:
    heading("1. Engine throughput vs pgbench (approval workload, each transition committed, in-process)")
    binary = pgbench_path()
    pgbench_version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    await print_environment({"pgbench": f"{pgbench_version} ({binary})"})
    print(
        f"sizes: c=1 {instances_c1} instances, c=16 {instances_c16} instances ({TRANSITIONS_PER_INSTANCE} "
        f"transitions each) in {ROUNDS} rounds; each round pgbench -M prepared for as long as its Stepwise "
        f"run (at least {min_seconds} s), which goes first alternating; the ratio is the median of the "
        f"rounds' ratios. pgbench script ({len(DOCUMENT)}-byte JSONB):"
    )
    print("\n".join(f"    {line}" for line in PGBENCH_SCRIPT.replace(DOCUMENT, "<doc>").splitlines()))
    targets: list[Target] = []
    async with temporary_database(NAME) as dsn:
        engine = await prepare_engine(sqlalchemy_url(dsn))
        try:
            await prepare_pgbench_tables(dsn)
            await run_stepwise(engine, 20, 4)  # warm-up: caches, pool, prepared statements
            with tempfile.TemporaryDirectory() as tmp:
                script = Path(tmp) / "transition.sql"
                script.write_text(PGBENCH_SCRIPT)
                for drivers, instances in ((1, instances_c1), (16, instances_c16)):
                    per_round = max(drivers, instances // ROUNDS)
                    ratios = []
                    for number in range(ROUNDS):
                        stepwise_first = number % 2 == 0
                        seconds = min_seconds
                        if stepwise_first:
                            stepwise = await run_stepwise(engine, per_round, drivers)
                            seconds = max(min_seconds, math.ceil(stepwise.seconds))
                        pg = await asyncio.to_thread(run_pgbench, binary, dsn, script, drivers, seconds)
                        if not stepwise_first:
                            stepwise = await run_stepwise(engine, per_round, drivers)
                        ratios.append(stepwise.transitions_per_second / pg.tps)
                        print(f"round {number + 1}/{ROUNDS}, {'stepwise' if stepwise_first else 'pgbench'} first:")
                        print(f"  {describe(stepwise)}")
                        print(f"  {describe_pgbench(pg)}")
                        print(f"  ratio {ratios[-1]:.3f}", flush=True)
                    ratio = statistics.median(ratios)
                    print(
                        f"ratio c={drivers}: median of the rounds' stepwise transitions/s / pgbench tps "
                        f"({', '.join(f'{r:.3f}' for r in ratios)}) = {ratio:.3f} (goal >= {GOALS[drivers]})",
                        flush=True,
                    )
                    targets.append(Target(f"engine_c{drivers}_vs_pgbench", ratio, GOALS[drivers], "x", True))
            targets.append(await keys_cost(engine, instances_c16))
            targets.append(await quorum_cost(engine, instances_c16))
        finally:
            await engine.db.dispose()
    print_targets(targets)
    return targets


async def keys_cost(engine: Engine, instances: int, drivers: int = 16) -> Target:
    """The c=16 rate with an idempotency key on every transition over the rate without: the median of
    :data:`KEY_ROUNDS` short back-to-back pairs (about as many instances in all as the engine's c=16 rounds)."""
    per_run = max(drivers * 4, instances // KEY_ROUNDS)
    for keyed in (False, True):  # warm-up: the keyed statement's shape, the key table's pages
        await run_stepwise(engine, drivers * 2, drivers, keyed=keyed)
    ratios = []
    for number in range(KEY_ROUNDS):
        order = (False, True) if number % 2 == 0 else (True, False)
        runs = {keyed: await run_stepwise(engine, per_run, drivers, keyed=keyed) for keyed in order}
        ratios.append(runs[True].transitions_per_second / runs[False].transitions_per_second)
        print(
            f"keys round {number + 1:>2}/{KEY_ROUNDS}: without {runs[False].transitions_per_second:7.1f}/s, "
            f"with {runs[True].transitions_per_second:7.1f}/s ({per_run} instances each): ratio {ratios[-1]:.3f}",
            flush=True,
        )
    ratio = statistics.median(ratios)
    low, _, high = statistics.quantiles(ratios, n=4)
    print(
        f"idempotency keys c={drivers}: median of {KEY_ROUNDS} rounds' transitions/s with a key / without = "
        f"{ratio:.3f} (quartiles {low:.3f}–{high:.3f}, range {min(ratios):.3f}–{max(ratios):.3f}; goal >= {KEYS_GOAL})",
        flush=True,
    )
    return Target(f"idempotency_keys_c{drivers}_vs_none", ratio, KEYS_GOAL, "x", True)


async def quorum_cost(engine: Engine, instances: int, drivers: int = 16) -> Target:
    """The quorum approval's instances/s at c=16 over the plain approval's, same engine, alternating rounds."""
    await run_quorum(engine, drivers, drivers)  # warm-up: the second definition's cache, its statements
    per_round = max(drivers, instances // ROUNDS)
    ratios = []
    for number in range(ROUNDS):
        order = (False, True) if number % 2 == 0 else (True, False)
        runs = {quorum: await (run_quorum if quorum else run_stepwise)(engine, per_round, drivers) for quorum in order}
        ratios.append(runs[True].instances_per_second / runs[False].instances_per_second)
        print(f"quorum round {number + 1}/{ROUNDS}: plain  {describe(runs[False])}")
        print(f"                   quorum {describe(runs[True])}")
        print(f"  ratio {ratios[-1]:.3f}", flush=True)
    ratio = statistics.median(ratios)
    print(
        f"quorum approval c={drivers}: median of the rounds' instances/s, 2 of 3 approvers / plain approval "
        f"({', '.join(f'{r:.3f}' for r in ratios)}) = {ratio:.3f} (goal >= {QUORUM_GOAL})",
        flush=True,
    )
    return Target(f"quorum_approval_c{drivers}_vs_plain", ratio, QUORUM_GOAL, "x", True)


def main() -> None:
    line_buffered()
    asyncio.run(run(*instance_counts("python -m bench.engine_throughput", __doc__, c1=600, c16=2400)))


if __name__ == "__main__":
    main()
