"""Events across languages, both ways.

Usage: events.py NATS_URL. Subscribes to interop.rs_to_py and
agent.task.completed, reports each event it receives (``event``), prints
``ready``; on the command ``publish`` publishes interop.py_to_rs and
agent.task.completed events of its own and reports them (``published``);
exits when stdin closes.
"""
from __future__ import annotations

import json
import sys

from common import connect, emit, in_force, read_command, run, wire
from openagentio import Envelope


async def main() -> None:
    bus = await connect(sys.argv[1], "py-events")

    async def on_event(env):
        if env.from_ != "py-events":  # not our own
            emit("event", env=wire(env))

    await bus.subscribe("interop.rs_to_py", on_event)
    await bus.subscribe("agent.task.completed", on_event)
    await in_force(bus.transport)
    emit("ready")

    while (cmd := await read_command()) not in ("", "exit"):
        if cmd != "publish":
            continue
        note = Envelope.new("interop.py_to_rs")
        note.payload = json.dumps({"text": "from python ✓", "list": [1, 2.5, None]}).encode()
        note.metadata = {"biz.key": "py", "nested": {"a": [True]}}
        note.session_id = "sess-events"
        note.conversation_id = "conv-events"
        note.correlation_id = "corr-py-1"
        note.channel = "python"
        note.user_id = "user-py"
        note.from_ = "py-events"
        note.seq = 5
        done = Envelope.new("agent.task.completed")
        done.payload = json.dumps({"task_id": "t-py", "status": "done"}).encode()
        done.is_final = True
        done.seq = 2
        done.correlation_id = "task-py"
        done.from_ = "py-events"
        for env in (note, done):
            await bus.publish(env)
            emit("published", env=wire(env))
        await bus.transport.flush()
    await bus.close()
    emit("done")


if __name__ == "__main__":
    run(main)
