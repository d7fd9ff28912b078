"""Dead letters across languages.

Usage: dead_letters.py NATS_URL. Serves invoke target ``py-doomed`` whose
handler always fails, behind the reference DeadLetter middleware (so each
failure is published to ``acp.v1.dlq.{event_type}``); watches
``acp.v1.dlq.>`` itself and reports each dead letter it sees (``dead``);
prints ``ready``; exits when stdin closes.
"""
from __future__ import annotations

import json
import sys

from common import emit, in_force, read_command, run
from openagentio import (
    Bus,
    DeadLetter,
    NATSDriver,
    WithAgentID,
    WithDefaultTimeout,
    WithMiddleware,
    WithTransport,
    dlq_sink,
)


async def main() -> None:
    transport = NATSDriver(sys.argv[1], name="py-dlq")
    bus = Bus.new(
        WithAgentID("py-dlq"),
        WithTransport(transport),
        WithDefaultTimeout(10.0),
        WithMiddleware(DeadLetter(dlq_sink(transport=transport))),
    )
    await bus.connect()

    async def doomed(env):
        raise RuntimeError("python handler gave up")

    async def on_dead(msg) -> None:
        emit("dead", subject=msg.subject, env=json.loads(msg.data))

    await bus.handle_invoke("py-doomed", doomed)
    await transport.subscribe("acp.v1.dlq.>", "", on_dead)
    await in_force(transport)
    emit("ready")
    while (cmd := await read_command()) not in ("", "exit"):
        pass
    await bus.close()


if __name__ == "__main__":
    run(main)
