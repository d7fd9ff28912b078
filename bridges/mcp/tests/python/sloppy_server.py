"""A hand-written MCP server over stdio that breaks the protocol the way some
servers do: its tool `loose` has no `inputSchema`. No SDK here, because every
SDK adds the schema. Tools: `loose` (echoes its arguments) and `strict(a)`.
With SLOPPY_REFUSE_INIT set, it answers `initialize` with that JSON-RPC error
message (and stays up, or exits with SLOPPY_EXIT_AFTER_REFUSING set).
"""

import json
import os
import sys


def reply(msg_id, result):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result}) + "\n")
    sys.stdout.flush()


TOOLS = [
    {"name": "loose", "description": "Echoes its arguments; declares no inputSchema."},
    {
        "name": "strict",
        "description": "Takes a number.",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "number"}},
            "required": ["a"],
        },
    },
]

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    method, msg_id = msg.get("method"), msg.get("id")
    if msg_id is None:
        continue  # a notification
    if method == "initialize" and os.environ.get("SLOPPY_REFUSE_INIT"):
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {
            "code": -32602, "message": os.environ["SLOPPY_REFUSE_INIT"]}}) + "\n")
        sys.stdout.flush()
        if os.environ.get("SLOPPY_EXIT_AFTER_REFUSING"):
            sys.exit(3)
    elif method == "initialize":
        reply(msg_id, {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "sloppy", "version": "0.1"},
        })
    elif method == "tools/list":
        reply(msg_id, {"tools": TOOLS})
    elif method == "tools/call":
        args = msg["params"].get("arguments") or {}
        text = json.dumps(args, sort_keys=True)
        reply(msg_id, {"content": [{"type": "text", "text": text}]})
    elif method == "ping":
        reply(msg_id, {})
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg_id,
                                     "error": {"code": -32601, "message": "no such method"}}) + "\n")
        sys.stdout.flush()
