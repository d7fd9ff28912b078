"""The reference SDK's bus (openagentio 0.3.0) measured the way benches/reference_sdk.rs
measures ours.

Usage:
  reference_bus.py call memory|NATS_URL TARGET IN_FLIGHT SECONDS
      Invokes TARGET from IN_FLIGHT concurrent loops for SECONDS (after a
      300 ms warm-up) and prints one JSON line: calls per second and the p50
      and p99 latency in microseconds. With `memory`, the reference in-memory
      transport is used and TARGET is served in the same process.
  reference_bus.py serve NATS_URL TARGET
      Serves TARGET (an echo of the payload), prints `ready` once the server
      has the subscription, and serves until stdin closes.

The payload is the Rust bench's: about 400 bytes of JSON.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

from openagentio import Bus, InMemoryDriver, NATSDriver

PAYLOAD = {"text": "x" * 360, "n": 12345, "tag": "bench"}


async def echo(env):
    return env.payload_json()


def make_bus(where: str, agent_id: str) -> Bus:
    transport = InMemoryDriver() if where == "memory" else NATSDriver(where, name=agent_id)
    return Bus(agent_id=agent_id, transport=transport, default_timeout=30.0)


async def call(where: str, target: str, in_flight: int, seconds: float) -> None:
    bus = make_bus(where, "py-bench-caller")
    await bus.connect()
    if where == "memory":
        await bus.handle_invoke(target, echo)
    warm_until = time.perf_counter() + 0.3
    while time.perf_counter() < warm_until:
        await bus.invoke(target, PAYLOAD)

    samples: list[int] = []
    end = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < end:
            t = time.perf_counter_ns()
            reply = await bus.invoke(target, PAYLOAD)
            samples.append(time.perf_counter_ns() - t)
            if reply.payload_json() != PAYLOAD:
                raise RuntimeError(f"wrong echo: {reply.payload_json()!r}")

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    samples.sort()

    def quantile(q: float) -> float:
        # Nearest rank.
        return samples[min(len(samples) - 1, int(q * len(samples)))] / 1000.0

    print(
        json.dumps(
            {"per_sec": len(samples) / elapsed, "p50_us": quantile(0.5), "p99_us": quantile(0.99)}
        ),
        flush=True,
    )
    await bus.close()


async def serve(url: str, target: str) -> None:
    bus = make_bus(url, "py-bench-server")
    await bus.connect()
    await bus.handle_invoke(target, echo)
    # A message to ourselves, queued behind the SUB, comes back only once the
    # server has the subscription.
    nc = bus.transport._require_conn()
    inbox = nc.new_inbox()
    back = asyncio.get_running_loop().create_future()

    async def on_probe(_msg) -> None:
        if not back.done():
            back.set_result(None)

    probe = await nc.subscribe(inbox, cb=on_probe)
    await nc.publish(inbox, b"")
    await asyncio.wait_for(back, 10)
    await probe.unsubscribe()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await bus.close()


def main() -> None:
    match sys.argv[1:]:
        case ["call", where, target, in_flight, seconds]:
            asyncio.run(call(where, target, int(in_flight), float(seconds)))
        case ["serve", url, target]:
            asyncio.run(serve(url, target))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
