"""``python -m bench`` (``make bench``): every benchmark in turn, then one summary table.

The output ends with one line per target, exactly ``target: NAME measured=X goal=Y PASS`` (or
``MISS``). A benchmark that fails prints its targets as ``MISS`` with ``measured=n/a`` and the error.
``--huge`` adds the 1M-task inbox size (about two more minutes of loading); ``--quick`` runs every
benchmark at a small size to check that they work (its figures are not the ones to quote).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable

from bench import (
    data_search,
    engine_throughput,
    graphql_overhead,
    inbox_scaling,
    peer_engine,
    push_memory,
    web_app,
    webhook_delivery,
)
from bench.common import Target, line_buffered, print_summary

BUDGET_SECONDS = 600


def benchmarks(args: argparse.Namespace) -> list[tuple[str, Callable[[], Awaitable[list[Target]]], list[Target]]]:
    """(name, run, the targets to report as MISS if it fails) for each benchmark, in order."""
    quick = args.quick
    sizes = [2_000, 10_000] if quick else [10_000, 100_000] + ([1_000_000] if args.huge else [])
    largest, smallest = inbox_scaling.label(max(sizes)), inbox_scaling.label(min(sizes))
    inbox_names = [f"{q}_p99_{largest}" for q in ("inbox_tasks", "step_metrics")]
    inbox_names += [f"{q}_p99_{largest}_vs_{smallest}" for q in ("inbox_tasks", "step_metrics")]
    return [
        (
            engine_throughput.NAME,
            lambda: engine_throughput.run(60 if quick else 600, 150 if quick else 2400),
            [Target(f"engine_c{c}_vs_pgbench", None, g, "x", True) for c, g in engine_throughput.GOALS.items()]
            + [Target("idempotency_keys_c16_vs_none", None, engine_throughput.KEYS_GOAL, "x", True)]
            + [Target("quorum_approval_c16_vs_plain", None, engine_throughput.QUORUM_GOAL, "x", True)],
        ),
        (
            peer_engine.NAME,
            lambda: peer_engine.run(30 if quick else 500, 100 if quick else 1600),
            [Target(f"peer_c{c}_vs_spiffworkflow", None, peer_engine.GOAL, "x", True) for c in (1, 16)],
        ),
        (
            inbox_scaling.NAME,
            lambda: inbox_scaling.run(sizes, 100 if quick else 400),
            [Target(n, None, inbox_scaling.P99_GOAL_MS, "ms", False) for n in inbox_names[:2]]
            + [Target(n, None, inbox_scaling.RATIO_GOAL, "x", False) for n in inbox_names[2:]],
        ),
        (
            data_search.NAME,
            lambda: data_search.run(sizes, 100 if quick else 400),
            [
                Target(f"data_search_p99_{largest}", None, data_search.P99_GOAL_MS, "ms", False),
                Target(f"data_search_p99_{largest}_vs_{smallest}", None, data_search.RATIO_GOAL, "x", False),
            ],
        ),
        (
            graphql_overhead.NAME,
            lambda: graphql_overhead.run(3 if quick else 15, 2 if quick else 10),
            [Target("graphql_vs_bare_route", None, graphql_overhead.GOAL, "x", True)],
        ),
        (
            webhook_delivery.NAME,
            lambda: webhook_delivery.run(1_000 if quick else 10_000),
            [Target("webhook_delivery_events_per_s", None, webhook_delivery.GOAL, "/s", True)],
        ),
        (
            push_memory.NAME,
            lambda: push_memory.run(2 if quick else 5, 100 if quick else 1000, 40 if quick else 200, 10.0),
            [
                push_memory.push_latency_target("failed", 100 if quick else 1000),
                Target("server_rss_idle", None, push_memory.RSS_GOAL_MB, "MB", False),
            ],
        ),
        (
            web_app.NAME,
            lambda: web_app.run(5 if quick else 40, 10 if quick else web_app.TASKS),
            [
                Target("web_step_page_painted_p95", None, web_app.PAINT_GOAL_MS, "ms", False),
                Target("web_app_shipped_compressed", None, web_app.BYTES_GOAL_KB, "KB", False),
                Target("web_commit_to_dom_p95", None, web_app.LATENCY_GOAL_MS, "ms", False),
            ],
        ),
    ]


async def run_all(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    selected = set(args.only.split(",")) if args.only else None
    targets: list[Target] = []
    for name, run, fallback in benchmarks(args):
        if selected is not None and name not in selected:
            continue
        began = time.perf_counter()
        try:
            targets += await run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            reason = f"the {name} benchmark failed: {type(exc).__name__}: {exc}"
            targets += [Target(t.name, None, t.goal, t.unit, t.higher_is_better, reason) for t in fallback]
        print(f"({name} took {time.perf_counter() - began:.0f} s)", flush=True)
    total = time.perf_counter() - started
    budget = "within" if total <= BUDGET_SECONDS else "OVER"
    print(f"\nall benchmarks took {total:.0f} s ({budget} the {BUDGET_SECONDS} s budget)")
    if not args.huge and not args.quick:
        print("the 1M-task inbox size is behind --huge (make bench BENCH_ARGS=--huge): loading it takes ~2 minutes")
    if args.quick:
        print("--quick: small sizes to check the benchmarks run; do not quote these figures")
    print_summary(targets, total)


def main() -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--huge", action="store_true", help="add the 1M-task inbox size (~2 minutes more)")
    parser.add_argument("--quick", action="store_true", help="small sizes: check that everything runs")
    names = [
        engine_throughput.NAME,
        peer_engine.NAME,
        inbox_scaling.NAME,
        data_search.NAME,
        graphql_overhead.NAME,
        push_memory.NAME,
        webhook_delivery.NAME,
    ]
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(names)}")
    asyncio.run(run_all(parser.parse_args()))


if __name__ == "__main__":
    main()
