"""A reference-SDK caller of the `echo_agent` example over NATS.

Usage: call_echo_agent.py NATS_URL. Prints the `echo` reply and the `chat`
frames (as wire dicts), then ``done``.
"""
from __future__ import annotations

import sys

from common import connect, emit, request, run, wire
from openagentio import WithTimeout


async def main() -> None:
    bus = await connect(sys.argv[1], "py-caller")
    timeout = WithTimeout(10.0)
    req = request({"msg": "from python"}, {"biz.key": "py"})
    reply = await bus.invoke("echo", req, timeout)
    emit("echo", request=wire(req), reply=wire(reply))
    req = request({"text": "one two three"})
    frames = [wire(f) async for f in await bus.stream_invoke("chat", req, timeout)]
    emit("chat", request=wire(req), frames=frames)
    emit("done")
    await bus.close()


if __name__ == "__main__":
    run(main)
