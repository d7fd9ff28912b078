"""Helpers shared by the interop peers (run by tests/python_interop.rs).

Every peer talks to the Rust test through stdout, one JSON object per line
(``{"kind": ..., ...}``), and reads commands from stdin, one per line. Logs go
to stderr. A watchdog ends the peer if the test stops driving it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from openagentio import Bus, Envelope, MessageReceived, NATSDriver

WATCHDOG_SECONDS = 60.0


def emit(kind: str, **fields: Any) -> None:
    """Reports one result to the Rust test."""
    print(json.dumps({"kind": kind, **fields}), flush=True)


def wire(env: Envelope) -> dict[str, Any]:
    """The envelope exactly as the reference SDK puts it on the wire."""
    return json.loads(env.to_bytes())


async def connect(url: str, agent_id: str, tenant: str = "", prefix: str = "acp.v1") -> Bus:
    bus = Bus(
        agent_id=agent_id,
        transport=NATSDriver(url, name=agent_id),
        tenant=tenant,
        subject_prefix=prefix,
        default_timeout=10.0,
    )
    await bus.connect()
    return bus


async def in_force(*transports: Any) -> None:
    """Returns once the server has every subscription each NATS transport
    (an openagentio ``NATSDriver``, e.g. ``bus.transport``) has made.

    nats-py's ``flush`` writes its PING straight to the socket, past the
    commands still waiting for its flusher task (a new SUB among them): under
    load its PONG can come back before the server has seen the SUB, and an
    event published in that gap reaches nobody. A message to ourselves,
    queued behind the SUBs, cannot overtake them: once it is back, they are
    in force.
    """
    for transport in transports:
        nc = transport._require_conn()
        inbox = nc.new_inbox()
        back = asyncio.get_running_loop().create_future()

        async def on_probe(_msg: Any, back: asyncio.Future = back) -> None:
            if not back.done():
                back.set_result(None)

        sub = await nc.subscribe(inbox, cb=on_probe)
        await nc.publish(inbox, b"")
        await asyncio.wait_for(back, 10)
        await sub.unsubscribe()


def request(payload: Any, metadata: dict[str, Any] | None = None, **fields: str) -> Envelope:
    """A request envelope of our making, so that its event_id is known."""
    env = Envelope.new(MessageReceived)
    env.payload = json.dumps(payload).encode("utf-8")
    env.metadata = metadata
    for k, v in fields.items():
        setattr(env, k, v)
    return env


async def read_command() -> str:
    """The next command line from the test ('' at end of input)."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


def run(main) -> None:
    """Runs ``main()`` under the watchdog; any failure is reported and exits 1."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)

    async def guarded() -> None:
        await asyncio.wait_for(main(), WATCHDOG_SECONDS)

    try:
        asyncio.run(guarded())
    except BaseException as e:  # noqa: BLE001
        emit("failed", error=f"{type(e).__name__}: {e}")
        logging.exception("peer failed")
        sys.exit(1)
