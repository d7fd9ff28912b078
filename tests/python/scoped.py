"""A reference-SDK peer on a custom subject prefix and a tenant.

Usage: scoped.py NATS_URL. Its bus uses prefix ``myco.agents`` and tenant
``acme``: it serves invoke target ``scoped-echo``, reports each
``scoped.to_py`` event it receives (``event``) and prints ``ready``; on the
command ``publish`` it publishes a ``scoped.to_rs`` event and reports it
(``published``); on ``call`` it invokes the Rust target ``rs-scoped`` and
reports the reply (``reply``); exits when stdin closes.
"""
from __future__ import annotations

import sys

from common import connect, emit, in_force, read_command, request, run, wire
from openagentio import Envelope, WithTimeout


async def main() -> None:
    bus = await connect(sys.argv[1], "py-scoped", tenant="acme", prefix="myco.agents")

    async def echo(env):
        return {"echoed": env.payload_json(), "tenant": env.tenant_id}

    async def on_event(env):
        emit("event", env=wire(env))

    await bus.handle_invoke("scoped-echo", echo)
    await bus.subscribe("scoped.to_py", on_event)
    await in_force(bus.transport)
    emit("ready")

    while (cmd := await read_command()) not in ("", "exit"):
        if cmd == "publish":
            env = Envelope.new("scoped.to_rs")
            env.payload = b'{"from": "python"}'
            env.from_ = "py-scoped"
            await bus.publish(env)
            emit("published", env=wire(env))
        elif cmd == "call":
            req = request({"ask": "rust"})
            reply = await bus.invoke("rs-scoped", req, WithTimeout(10.0))
            emit("reply", request=wire(req), reply=wire(reply))
    await bus.close()


if __name__ == "__main__":
    run(main)
