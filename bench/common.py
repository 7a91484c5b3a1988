"""What every benchmark shares: its own PostgreSQL database, the environment report, targets, servers."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import asyncpg
import httpx

from engine.storage.database import Database
from engine.storage.migrations import upgrade

ADMIN_URL = os.environ.get("STEPWISE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sqlalchemy", "asyncpg", "strawberry-graphql", "graphql-core", "starlette", "uvicorn", "SpiffWorkflow")


# -- targets ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One goal: ``measured`` against ``goal``; ``measured`` is None when it could not be measured."""

    name: str
    measured: float | None
    goal: float
    unit: str  # "x" for ratios, "ms", "MB"
    higher_is_better: bool
    reason: str = ""

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal

    def _value(self, value: float) -> str:
        if self.unit == "x":
            return f"{value:.2f}x"
        return f"{value:.1f}{self.unit}" if value < 100 else f"{value:.0f}{self.unit}"

    @property
    def measured_text(self) -> str:
        return "n/a" if self.measured is None else self._value(self.measured)

    @property
    def goal_text(self) -> str:
        return (">=" if self.higher_is_better else "<=") + f"{self.goal:g}{self.unit}"

    def line(self) -> str:
        verdict = "PASS" if self.passed else "MISS"
        return f"target: {self.name} measured={self.measured_text} goal={self.goal_text} {verdict}"


def print_targets(targets: Sequence[Target]) -> None:
    for target in targets:
        if target.reason:
            print(f"  reason ({target.name}): {target.reason}")
    for target in targets:
        print(target.line())


def print_summary(targets: Sequence[Target], seconds: float | None = None) -> None:
    """The table, then one machine-readable ``target:`` line per target (always the last lines)."""
    name_width = max([len(t.name) for t in targets] + [6])
    print()
    print("=" * 78)
    title = "SUMMARY" + (f"  (total {seconds:.0f} s)" if seconds is not None else "")
    print(title)
    print(f"{'target':<{name_width}}  {'measured':>10}  {'goal':>10}  result")
    print(f"{'-' * name_width}  {'-' * 10}  {'-' * 10}  ------")
    for t in targets:
        print(f"{t.name:<{name_width}}  {t.measured_text:>10}  {t.goal_text:>10}  {'PASS' if t.passed else 'MISS'}")
    print("=" * 78)
    print_targets(targets)


# -- printing --------------------------------------------------------------------------------------


def line_buffered() -> None:
    """Print each line as it comes, also into a pipe or a log file (the runs are long)."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)


def instance_counts(prog: str, description: str | None, c1: int, c16: int) -> tuple[int, int]:
    """The command line of the engine benchmarks: instances to run at c=1 and at c=16."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--instances", type=int, default=None, help="instances per run (both concurrencies)")
    parser.add_argument("--instances-c1", type=int, default=c1)
    parser.add_argument("--instances-c16", type=int, default=c16)
    args = parser.parse_args()
    return args.instances or args.instances_c1, args.instances or args.instances_c16


HUGE = 1_000_000


def scaling_arguments(
    prog: str, description: str | None, samples_help: str, argv: Sequence[str] | None = None
) -> tuple[list[int], int]:
    """The command line of the scaling benchmarks: the sizes to load (ascending, at least two: their
    targets compare the largest with the smallest) and the requests to time at each."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated task counts (ascending)")
    parser.add_argument("--huge", action="store_true", help="add the 1M size (about 2 minutes more to load)")
    parser.add_argument("--samples", type=int, default=400, help=samples_help)
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",")} | ({HUGE} if args.huge else set()))
    if len(sizes) < 2:
        parser.error("--sizes: give at least two sizes (the targets compare the largest with the smallest)")
    return sizes, args.samples


def heading(title: str) -> None:
    print()
    print("#" * 78)
    print(f"# {title}")
    print("#" * 78, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_total_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


async def print_environment(extra: dict[str, str] | None = None) -> None:
    """CPU, memory, load, Python, PostgreSQL and its settings, package versions and the commit measured."""
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        server_version = await connection.fetchval("SHOW server_version")
        settings = await connection.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name",
            ["shared_buffers", "synchronous_commit", "fsync", "max_connections", "work_mem", "jit"],
        )
    finally:
        await connection.close()
    load = os.getloadavg()
    dirty = _git("status", "--porcelain", "--", "engine", "schema", "server")
    print("environment:")
    print(f"  cpus={os.cpu_count()} model={_cpu_model()!r} memory={_memory_total_mb()} MB")
    print(f"  load average={load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (machine is shared: ratios, not absolutes)")
    print(f"  python={platform.python_version()} ({sys.executable}) os={platform.platform()}")
    pg_settings = " ".join(f"{r['name']}={r['setting']}{r['unit'] or ''}" for r in settings)
    print(f"  postgresql={server_version} at {ADMIN_URL.rsplit('@', 1)[-1]}; {pg_settings}")
    print("  " + " ".join(f"{p}={_version(p)}" for p in PACKAGES))
    state = "with uncommitted changes in engine/schema/server" if dirty else "clean engine/schema/server"
    print(f"  stepwise commit={_git('rev-parse', '--short', 'HEAD')} ({state})")
    for key, value in (extra or {}).items():
        print(f"  {key}={value}")
    sys.stdout.flush()


# -- databases -------------------------------------------------------------------------------------


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@asynccontextmanager
async def temporary_database(tag: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """Create ``stepwise_bench_<tag>_<random>`` (migrated to head); yield its plain DSN; always drop it."""
    name = f"stepwise_bench_{tag}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    print(f"database: {name} (created; dropped at the end)", flush=True)
    try:
        if migrate:
            db = Database(sqlalchemy_url(dsn))
            try:
                await upgrade(db)
            finally:
                await db.dispose()
        yield dsn
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# -- server processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_bin(name: str) -> str:
    """An executable next to this interpreter (the venv's ``stepwise``), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class ServerProcess:
    """A server started by a benchmark, stopped by its own pid (never by name)."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, path: str = "/healthz", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}: {self.tail()}")
                try:
                    if (await client.get(path)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout} s: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time one process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of one process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
