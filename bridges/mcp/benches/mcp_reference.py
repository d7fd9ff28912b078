"""The reference side of `cargo bench -p openagentio-mcp --bench mcp_echo`.

Runs the reference Python `McpToolBridge` (openagentio 0.3.0) on the reference
in-memory bus (`InMemoryDriver`), over its own stdio child of our demo server,
and measures `bus.invoke("demo.echo", {"text": ...})` the way the Rust bench
measures its rows: a 300 ms warm-up, then `in_flight` concurrent loops for
`--secs` seconds, each call timed on its own (`time.perf_counter_ns`);
throughput is calls / elapsed, p50 and p99 are nearest-rank percentiles of
every call's latency.

Prints one JSON row per level on stdout:
    {"name", "in_flight", "per_sec", "p50_us", "p99_us"}

Usage (the Rust bench runs it):
    python mcp_reference.py --server PATH/openagentio-mcp-demo [--secs 3]
        [--levels 1,32] [--text-len 360]

Needs a python with `openagentio[mcp]==0.3.0` (it pulls `mcp<2` and jsonschema).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import time

from openagentio import Bus, InMemoryDriver, WithAgentID, WithTransport
from openagentio.bridge.config import BridgeDefinition
from openagentio.bridge.mcp_tool import McpToolBridge

NAME = "reference Python McpToolBridge (memory)"


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in microseconds."""
    if not sorted_ns:
        return float("nan")
    idx = max(0, math.ceil(q * len(sorted_ns)) - 1)
    return sorted_ns[idx] / 1000.0


async def measure(bus: Bus, text: str, in_flight: int, secs: float) -> dict:
    args = {"text": text}

    async def call() -> None:
        env = await bus.invoke("demo.echo", args)
        if env.event_type != "agent.response.final":
            raise RuntimeError(f"unexpected reply {env.event_type}: {env.payload_json()}")

    warm = time.perf_counter() + 0.3
    while time.perf_counter() < warm:
        await call()

    end = time.perf_counter() + secs
    lat: list[int] = []

    async def loop() -> int:
        n = 0
        while time.perf_counter() < end:
            t = time.perf_counter_ns()
            await call()
            lat.append(time.perf_counter_ns() - t)
            n += 1
        return n

    started = time.perf_counter()
    counts = await asyncio.gather(*(loop() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    lat.sort()
    return {
        "name": NAME,
        "in_flight": in_flight,
        "per_sec": sum(counts) / elapsed,
        "p50_us": percentile(lat, 0.50),
        "p99_us": percentile(lat, 0.99),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="the openagentio-mcp-demo binary")
    ap.add_argument("--secs", type=float, default=3.0)
    ap.add_argument("--levels", default="1,32")
    ap.add_argument("--text-len", type=int, default=360)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    bus = Bus.new(WithAgentID("bench"), WithTransport(InMemoryDriver()))
    await bus.connect()
    definition = BridgeDefinition.from_dict(
        {
            "name": "demo",
            "type": "mcp_tool",
            "config": {"transport": "stdio", "command": a.server, "args": [], "timeout": 10},
            "mappings": {"target_prefix": "demo"},
        }
    )
    bridge = McpToolBridge(bus, definition)
    await bridge.start()
    try:
        text = "x" * a.text_len
        env = await bus.invoke("demo.echo", {"text": text})
        got = env.payload_json()
        if not isinstance(got, dict) or got.get("text") != text:
            raise SystemExit(f"echo through the reference bridge answered {env.event_type}: {got!r}")
        for level in (int(x) for x in a.levels.split(",")):
            row = await measure(bus, text, level, a.secs)
            print(json.dumps(row), flush=True)
    finally:
        await bridge.stop()
        await bus.close()


if __name__ == "__main__":
    asyncio.run(main())
