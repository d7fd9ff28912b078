"""Reference-SDK handlers that a Rust caller invokes and streams from.

Usage: serve_rust.py NATS_URL. Registers py-echo, py-chat, py-fail, py-crash,
py-fail-stream, py-silent, py-burst (and `echo` in tenant acme), prints ``ready``, then
serves until stdin closes.
"""
from __future__ import annotations

import sys

from common import connect, emit, in_force, read_command, run
from openagentio import (
    AgentTimeoutError,
    DeltaPayload,
    FinalPayload,
    InvalidRequestError,
    StartedPayload,
)


async def main() -> None:
    url = sys.argv[1]
    bus = await connect(url, "py-server")
    acme = await connect(url, "py-acme", tenant="acme")

    async def echo(env):
        return {
            "payload": env.payload_json(),
            "event_id": env.event_id,
            "metadata": env.metadata,
            "session_id": env.session_id,
            "conversation_id": env.conversation_id,
            "user_id": env.user_id,
            "from": env.from_,
            "to": env.to,
            "traceparent": env.traceparent,
        }

    async def chat(env, w):
        words = env.payload_json().split(" ")
        await w.started(StartedPayload(meta={"model": "python"}))
        for word in words:
            await w.delta(DeltaPayload(delta=word))
        await w.final(FinalPayload(result={"words": len(words)}))

    async def burst(env, w):
        # As fast as the SDK sends: no flow control on this side.
        for _ in range(int(env.payload_json()["n"])):
            await w.delta(DeltaPayload(delta="abcdefgh"))
        await w.final(FinalPayload(result="done"))

    async def fail(env):
        raise InvalidRequestError("python says no")

    async def crash(env):
        raise ValueError("python crashed")

    async def fail_stream(env, w):
        await w.delta(DeltaPayload(delta="partial"))
        raise AgentTimeoutError("python stream gave up")

    async def silent(env, w):
        return None

    async def shared(env):
        return {"served_by": "python"}

    async def shared_stream(env, w):
        await w.delta(DeltaPayload(delta="python"))
        await w.final(FinalPayload(result={"served_by": "python"}))

    async def tenant_echo(env):
        return {"tenant": env.tenant_id, "served_by": "py-acme"}

    await bus.handle_invoke("py-echo", echo)
    await bus.handle_stream("py-chat", chat)
    await bus.handle_stream("py-burst", burst)
    await bus.handle_invoke("py-fail", fail)
    await bus.handle_invoke("py-crash", crash)
    await bus.handle_stream("py-fail-stream", fail_stream)
    await bus.handle_stream("py-silent", silent)
    await acme.handle_invoke("echo", tenant_echo)
    # The same targets as a Rust worker: one queue group, a mixed fleet.
    await bus.handle_invoke("mixed", shared)
    await bus.handle_stream("mixed-stream", shared_stream)
    await in_force(bus.transport, acme.transport)
    emit("ready")
    while await read_command() not in ("", "exit"):
        pass
    await acme.close()
    await bus.close()
    emit("done")


if __name__ == "__main__":
    run(main)
