"""The request-level attacks (docs/operations.md, "Limits") in a bounded loop on loopback: the server's
RSS stays within 2× of idle and another client's ``{ me { id } }`` p99 stays under 100 ms.

Against one ``stepwise serve`` (PostgreSQL, demo loaded), ``--attackers`` loops send, in turn:
anonymous uploads whose headers promise 60 MB, bodies over the limit, headers that never end,
bodies that never arrive, NUL characters and lone surrogates, ``1e400``, JSON nested 950 deep,
5,001-digit integers, invalid UTF-8, a body of ``"s"``, a multipart ``map`` that is not an object,
a document nested 950 deep, 5,000 operations without ``operationName``, 31 aliases and a cost far
past the limit. Meanwhile bob's ``{ me { id } }`` is timed one request at a time. Each answer
must be a 4xx (or a closed connection for the slow ones), never a 5xx.

The attackers run in a process of their own and bob is timed from this one (bench.fairness says
why). A body over the limit is sent on a connection of its own: the server answers ``413`` from its
``Content-Length`` and closes without reading the rest, and the client, still writing, may see the
connection reset before it reads the answer (TCP drops what the peer had not read yet): "closed".

    python -m bench.attacks [--seconds 20] [--attackers 8] [--env NAME=VALUE ...] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import httpx

from bench.common import Target, heading, percentile, print_environment, print_summary, rss_mb
from bench.fairness import LoadProcess, demo_server, probe
from bench.inbox_scaling import bearer

BOUNDARY = "attack"
JSON_HEADERS = {"Content-Type": "application/json"}


def _json(variables_fragment: bytes) -> bytes:
    return b'{"query": "{ me { id } }", "variables": {"x": ' + variables_fragment + b"}}"


BODIES: dict[str, bytes] = {
    "1e400": _json(b"1e400"),
    "nested 950": _json(b"[" * 950 + b"]" * 950),
    "5001 digits": _json(b"9" * 5001),
    "invalid utf-8": _json(b'"\xff\xfe"'),
    "just s": b'"s"',
    "nul": json.dumps(
        {
            "query": 'mutation($b: String!) { postTaskMessage(input: {taskId: "x", body: $b}) { __typename } }',
            "variables": {"b": "a\x00b"},
        }
    ).encode(),  # fmt: skip
    "surrogate": b'{"query": "{ task(id: \\"\\ud800\\") { id } }"}',
    "deep document": json.dumps({"query": "{ me " + "{ id " * 950 + "}" * 951}).encode(),
    "5000 operations": json.dumps({"query": " ".join(f"query Q{i} {{ me {{ id }} }}" for i in range(5000))}).encode(),
    "31 aliases": json.dumps({"query": "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(31)) + " }"}).encode(),
    "costly": json.dumps(
        {"query": "{ tasks(first: 200) { edges { node { step { tasks(first: 200) { edges { node { id } } } } } } } }"}
    ).encode(),  # fmt: skip
}
OVER_THE_LIMIT = _json(b'"' + b"x" * (2 << 20) + b'"')


async def raw(port: int, head: bytes, body: bytes = b"", wait: float = 15.0) -> bytes:
    """Send ``head`` and ``body`` on a new connection; what came back before the server closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    except (TimeoutError, ConnectionError):
        return b""
    finally:
        writer.close()


def _status(answer: bytes) -> str:
    parts = answer.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 and answer.startswith(b"HTTP/") else "closed"


async def attacker(port: int, token: str, until: float, seen: Counter[str]) -> None:
    authorization = f"Authorization: Bearer {token}\r\n".encode()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        while time.monotonic() < until:
            for name, body in BODIES.items():
                try:
                    response = await http.post("/graphql", content=body, headers={**JSON_HEADERS, **bearer("alice")})
                    seen[f"{name} {response.status_code}"] += 1
                except httpx.TransportError:  # not expected of these: counted apart
                    seen[f"{name} closed"] += 1
            over = (f"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(OVER_THE_LIMIT)}\r\n").encode() + authorization + b"\r\n"  # fmt: skip
            seen[f"over the body limit {_status(await raw(port, over, OVER_THE_LIMIT))}"] += 1
            upload = (f"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}"
                      f"\r\nContent-Length: 60000000\r\n\r\n").encode()  # fmt: skip
            seen[f"anonymous upload {_status(await raw(port, upload))}"] += 1
            bad_map = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{{}}\r\n"
                       f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n[1]\r\n--{BOUNDARY}--\r\n"
                       ).encode()  # fmt: skip
            head = (
                (
                    f"POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; "
                    f"boundary={BOUNDARY}\r\nContent-Length: {len(bad_map)}\r\n"
                ).encode()
                + authorization
                + b"\r\n"
            )
            seen[f"bad map {_status(await raw(port, head, bad_map))}"] += 1
            if time.monotonic() >= until:
                break
            slow_body = (
                b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999\r\n"
            )
            slow = await asyncio.gather(
                raw(port, b"POST /graphql HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait=15),
                raw(port, slow_body + authorization + b"\r\n", b'{"query"', wait=70),
            )
            seen[f"endless headers {_status(slow[0])}"] += 1
            seen[f"endless body {_status(slow[1])}"] += 1


async def attack(port: int, token: str, attackers: int, seconds: float) -> dict[str, int]:
    seen: Counter[str] = Counter()
    until = time.monotonic() + seconds
    await asyncio.gather(*(attacker(port, token, until, seen) for _ in range(attackers)))
    return dict(seen)


async def run(seconds: float, attackers: int, probes: int, extra_env: dict[str, str] | None = None) -> list[Target]:
    heading(f"{NAME}: {attackers} loops of the attacks for {seconds:g} s; bob's me p99 and the RSS")
    await print_environment()
    env = {"STEPWISE_HEADER_TIMEOUT_SECONDS": "2", "STEPWISE_BODY_TIMEOUT_SECONDS": "2", **(extra_env or {})}
    async with demo_server("attacks", env) as server:
        probe(server.port, "bob", 20)
        alone = percentile(probe(server.port, "bob", 200), 99)  # not a target: what this host gives at all
        idle = rss_mb(server.pid)
        token = bearer("alice")["Authorization"].split()[1]
        loops = LoadProcess(attack, server.port, token, attackers, seconds + 1.0)
        time.sleep(1.0)  # the process starts
        deadline = time.monotonic() + seconds
        times: list[float] = []
        peak = idle
        while time.monotonic() < deadline:
            times += probe(server.port, "bob", 10)
            peak = max(peak, rss_mb(server.pid))
        seen = loops.result(timeout=seconds + 120)
        after = rss_mb(server.pid)
    print(f"RSS idle {idle:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB; bob's probes: {len(times)}, "
          f"his p99 before the attacks {alone:.1f} ms", flush=True)  # fmt: skip
    for answer, count in sorted(seen.items()):
        print(f"  {answer}: {count}", flush=True)
    errors = sum(count for answer, count in seen.items() if answer.rsplit(" ", 1)[1].startswith("5")
                 and not answer.startswith("endless"))  # fmt: skip
    return [
        Target("attacks_rss_peak_vs_idle", peak / idle, 2.0, "x", False),
        Target("attacks_me_p99", percentile(times, 99), 100.0, "ms", False),
        Target("attacks_server_errors", float(errors), 0.0, "", False),
    ]


NAME = "attacks"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--attackers", type=int, default=8)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a server variable")
    parser.add_argument("--quick", action="store_true", help="a tiny run that proves the benchmark works")
    args = parser.parse_args()
    seconds, attackers = (4.0, 2) if args.quick else (args.seconds, args.attackers)
    print_summary(asyncio.run(run(seconds, attackers, 0, dict(item.split("=", 1) for item in args.env))))


if __name__ == "__main__":
    main()
