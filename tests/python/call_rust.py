"""A reference-SDK caller invoking and streaming from Rust handlers.

Usage: call_rust.py NATS_URL. Prints one JSON line per call with the request
it sent and every frame it received (as wire dicts), then ``done``.
"""
from __future__ import annotations

import sys

from common import connect, emit, request, run, wire
from openagentio import WithTimeout


async def main() -> None:
    bus = await connect(sys.argv[1], "py-caller")
    timeout = WithTimeout(10.0)

    async def invoke(name: str, target: str, req) -> None:
        reply = await bus.invoke(target, req, timeout)
        emit("invoke", name=name, request=wire(req), reply=wire(reply))

    async def stream(name: str, target: str, req) -> None:
        frames = []
        async for frame in await bus.stream_invoke(target, req, timeout):
            frames.append(wire(frame))
        emit("stream", name=name, request=wire(req), frames=frames)

    await invoke(
        "echo",
        "rs-echo",
        request(
            {"text": "héllo 世界 👋", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}},
            {"biz.key": "v1", "dingtalk.conv": {"id": 7}, "acp.custom": "internal"},
            session_id="sess-py",
            conversation_id="conv-py",
            user_id="user-py",
            channel="python",
        ),
    )
    # A plain reference stream_invoke gets every frame of a Rust stream handler.
    await stream(
        "chat-streaming",
        "rs-chat",
        request("one two three", {"biz.key": "v2"}, session_id="sess-py"),
    )
    await invoke("fail", "rs-fail", request({"x": 1}, {"biz.key": "v4"}))
    await stream("fail-stream", "rs-fail-stream", request(None))
    await stream("silent-stream", "rs-silent", request(None))
    await invoke("tenant", "rs-echo", request({"t": 1}, tenant_id="acme"))
    # The reference SDK sends no deadline: the Rust bus's serve timeout ends it.
    await invoke("hang", "rs-hang", request({}))
    emit("done")
    await bus.close()


if __name__ == "__main__":
    run(main)
