#!/usr/bin/env python3
"""A Python agent on the same NATS bus as the Rust service, written with the
reference SDK (`pip install openagentio==0.3.0 nats-py`).

It serves two targets that the Rust service's HTTP gateway and CLI can call
like any other, and calls one target of the Rust service itself:

  py.wordcount  invoke   {"text": "..."} -> {"words", "chars", "served_by"}
  py.story      stream   {"text": "..."} -> the text back word by word, then {"text", "words"}
  --call        at start, invokes a Rust-side target once (default tools.add,
                a tool of the demo stack's MCP server) and prints the answer

    python examples/python_agent/agent.py --nats nats://127.0.0.1:4222

It prints one line when it serves and one for the call, then runs until
Ctrl-C (or SIGTERM).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

from openagentio import (
    Bus,
    BusError,
    DeltaPayload,
    FinalPayload,
    NATSDriver,
    StartedPayload,
)

SERVED_BY = "python (openagentio 0.3.0)"


async def subscriptions_in_force(transport: NATSDriver) -> None:
    """Returns once the server has this connection's subscriptions.

    nats-py's ``flush`` can send its PING ahead of SUBs still queued, so its
    answer does not prove them; a message to ourselves, queued behind them,
    does once it comes back.
    """
    nc = transport._require_conn()
    inbox = nc.new_inbox()
    back = asyncio.get_running_loop().create_future()

    async def on_probe(_msg: object) -> None:
        if not back.done():
            back.set_result(None)

    sub = await nc.subscribe(inbox, cb=on_probe)
    await nc.publish(inbox, b"")
    await asyncio.wait_for(back, 10)
    await sub.unsubscribe()


def text_of(payload: object) -> str:
    if isinstance(payload, dict):
        return str(payload.get("text", ""))
    return "" if payload is None else str(payload)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nats", default=os.environ.get("OPENAGENTIO_BUS", "nats://127.0.0.1:4222"))
    p.add_argument("--call", default="tools.add", help="a Rust-side target to invoke once at start ('' to skip)")
    p.add_argument("--call-payload", default='{"a": 2, "b": 3}', help="its payload (JSON)")
    p.add_argument("--word-delay", type=float, default=0.1, help="seconds between streamed words")
    a = p.parse_args()

    bus = Bus(agent_id="py-agent", transport=NATSDriver(a.nats, name="py-agent"), default_timeout=10.0)
    await bus.connect()

    # An invoke handler returns the result; the SDK sends it as one final frame.
    async def wordcount(env):
        text = text_of(env.payload_json())
        return {"words": len(text.split()), "chars": len(text), "served_by": SERVED_BY}

    # A stream handler writes started, deltas and final through the writer.
    async def story(env, w):
        text = text_of(env.payload_json())
        words = text.split()
        await w.started(StartedPayload(meta={"agent": "py-agent", "served_by": SERVED_BY}))
        for i, word in enumerate(words):
            await w.delta(DeltaPayload(delta=word if i == 0 else " " + word))
            await asyncio.sleep(a.word_delay)
        await w.final(FinalPayload(result={"text": " ".join(words), "words": len(words)}))

    await bus.handle_invoke("py.wordcount", wordcount)
    await bus.handle_stream("py.story", story)
    await subscriptions_in_force(bus.transport)  # on the server before we say so
    print(f"py-agent serving py.wordcount (invoke) and py.story (stream) on {a.nats}", flush=True)

    if a.call:
        try:
            resp = await bus.invoke(a.call, json.loads(a.call_payload))
            print(f"py-agent called {a.call}: {resp.event_type} {json.dumps(resp.payload_json())}", flush=True)
        except BusError as e:
            print(f"py-agent called {a.call}: failed: {e}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await bus.close()


if __name__ == "__main__":
    asyncio.run(main())
