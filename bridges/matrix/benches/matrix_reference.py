"""The reference side of `cargo bench -p openagentio-matrix --bench matrix_latency`.

Runs the reference Python `MatrixEventBridge` (openagentio 0.3.0, on its
in-memory bus) against the Synapse the Rust bench started, and measures the
same two latencies the same way the Rust side does:

- inbound: a plain client-server `PUT /send` by another user, timed from just
  before the request until the `matrix.message.received` bus handler runs;
- outbound: from just before `bus.publish(matrix.message.send)` until another
  client, long-polling `/sync`, sees the message.

Driven by the Rust bench over stdin/stdout, one line each, so that the two
bridges' messages alternate (one at a time, each waiting for the previous to
arrive) and share whatever else the machine is doing:

    stdin  line 1: JSON {homeserver, bot_user_id, bot_token, client_token,
                   room_id, sync_timeout}          -> stdout "ready"
    stdin  "in <text>"   (one inbound message)     -> stdout latency in ms
    stdin  "observe"     (start the observer)      -> stdout "ready"
    stdin  "out <text>"  (one outbound message)    -> stdout latency in ms
    stdin  "quit"

Needs a python with `openagentio[bridge]==0.3.0` (the bridge imports httpx).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from urllib.parse import quote

import httpx

from openagentio import Bus, InMemoryDriver, WithAgentID, WithTransport
from openagentio.bridge.config import BridgeDefinition
from openagentio.bridge.matrix_event import MatrixEventBridge
from openagentio.event.envelope import Envelope

WAIT = 30.0


def sync_filter(room_id: str) -> str:
    """The observer's filter; the Rust bench uses the same one."""
    return json.dumps(
        {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "rooms": [room_id],
                "timeline": {"limit": 100, "types": ["m.room.message"]},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
        },
        separators=(",", ":"),
    )


class Observer:
    """Another client of the room: long-polls /sync and timestamps arrivals."""

    def __init__(self, hs: str, token: str, room_id: str, sender: str, timeout_s: float):
        self.hs = hs
        self.room_id = room_id
        self.sender = sender
        self.timeout_ms = int(timeout_s * 1000)
        self.http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s + 15.0),
            trust_env=False,
        )
        self.filter = sync_filter(room_id)
        self.arrivals: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        self.since: str | None = None

    async def _sync(self, timeout_ms: int) -> dict:
        params = {"filter": self.filter, "timeout": str(timeout_ms), "set_presence": "offline"}
        if self.since is not None:
            params["since"] = self.since
        r = await self.http.get(f"{self.hs}/_matrix/client/v3/sync", params=params)
        r.raise_for_status()
        return r.json()

    async def start(self) -> None:
        self.since = (await self._sync(0))["next_batch"]

    async def run(self) -> None:
        while True:
            data = await self._sync(self.timeout_ms)
            now = time.perf_counter()
            room = ((data.get("rooms") or {}).get("join") or {}).get(self.room_id) or {}
            for ev in (room.get("timeline") or {}).get("events") or []:
                if ev.get("sender") == self.sender and ev.get("type") == "m.room.message":
                    await self.arrivals.put(((ev.get("content") or {}).get("body", ""), now))
            self.since = data["next_batch"]


async def wait_for(queue: asyncio.Queue, text: str) -> float:
    while True:
        body, at = await asyncio.wait_for(queue.get(), WAIT)
        if body == text:
            return at


async def main() -> None:
    loop = asyncio.get_running_loop()

    async def readline() -> str:
        return (await loop.run_in_executor(None, sys.stdin.readline)).strip()

    def reply(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    args = json.loads(await readline())
    hs, room_id = args["homeserver"], args["room_id"]
    sync_timeout = float(args["sync_timeout"])

    bus = Bus.new(WithAgentID("bench"), WithTransport(InMemoryDriver()))
    await bus.connect()
    received: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    async def on_received(env: Envelope) -> None:
        at = time.perf_counter()
        await received.put(((env.payload_json() or {}).get("text", ""), at))

    await bus.subscribe("matrix.message.received", on_received)

    definition = BridgeDefinition.from_dict(
        {
            "name": "matrix",
            "type": "matrix_event",
            "config": {
                "homeserver_url": hs,
                "access_token": args["bot_token"],
                "user_id": args["bot_user_id"],
                "room_ids": [room_id],
                "sync_timeout": sync_timeout,
                "initial_sync_behavior": "skip",
            },
        }
    )
    bridge = MatrixEventBridge(bus, definition)
    await bridge.start()
    deadline = time.monotonic() + WAIT
    while bridge._next_batch is None:  # the initial (skipped) sync is done
        if time.monotonic() > deadline:
            raise SystemExit("reference bridge did not finish its initial sync")
        await asyncio.sleep(0.01)

    sender = httpx.AsyncClient(
        headers={"Authorization": f"Bearer {args['client_token']}"},
        timeout=httpx.Timeout(WAIT),
        trust_env=False,
    )
    send_base = f"{hs}/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message/"
    observer = Observer(hs, args["client_token"], room_id, args["bot_user_id"], sync_timeout)
    obs_task: asyncio.Task | None = None
    reply("ready")

    while True:
        cmd, _, text = (await readline()).partition(" ")
        if cmd == "in":
            t0 = time.perf_counter()
            r = await sender.put(send_base + f"py{uuid.uuid4().hex}", json={"msgtype": "m.text", "body": text})
            r.raise_for_status()
            at = await wait_for(received, text)
            reply(f"{(at - t0) * 1000.0:.3f}")
        elif cmd == "observe":
            await observer.start()
            obs_task = asyncio.create_task(observer.run())
            reply("ready")
        elif cmd == "out":
            env = Envelope.new("matrix.message.send")
            env.payload = json.dumps({"text": text, "room_id": room_id}).encode()
            t0 = time.perf_counter()
            await bus.publish(env)
            at = await wait_for(observer.arrivals, text)
            reply(f"{(at - t0) * 1000.0:.3f}")
        else:
            break

    if obs_task is not None:
        obs_task.cancel()
        try:
            await obs_task
        except asyncio.CancelledError:
            pass
    await bridge.stop()
    await sender.aclose()
    await observer.http.aclose()
    await bus.close()


if __name__ == "__main__":
    asyncio.run(main())
