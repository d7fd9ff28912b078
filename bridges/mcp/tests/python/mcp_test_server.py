"""An MCP server written with the Python `mcp` SDK, for the bridge's tests.

Usage: mcp_test_server.py [--http PORT]   (stdio by default)

Tools:
- echo(text)                 returns text
- slow(seconds, steps)       reports progress each step; records "started" and,
                             when cancelled, "cancelled" (one line each) in the
                             file named by OPENAGENTIO_TEST_RECORD
- fail(message)              raises: the SDK answers with an isError result
- strict(count, mode, tag)   a strict schema (1 <= count <= 10, mode in
                             fast|safe, tag matching ^[a-z]+$), structured output

Works with mcp 2.x (MCPServer) and 1.x (FastMCP).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Literal

import anyio
from pydantic import BaseModel, Field

try:  # mcp 2.x
    from mcp.server.mcpserver import Context, MCPServer as Server
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import Context, FastMCP as Server
    from mcp.server.fastmcp.exceptions import ToolError

server = Server("openagentio-python-test")


def record(line: str) -> None:
    path = os.environ.get("OPENAGENTIO_TEST_RECORD")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    print(f"record: {line}", file=sys.stderr, flush=True)


@server.tool()
def echo(text: str) -> str:
    """Returns its text."""
    return text


@server.tool()
async def slow(ctx: Context, seconds: float = 5.0, steps: int = 5) -> str:
    """Sleeps in steps, reporting progress."""
    record("started")
    done = False
    try:
        for i in range(1, steps + 1):
            await anyio.sleep(seconds / steps)
            await ctx.report_progress(i, steps, f"step {i}")
        done = True
        return f"slept {seconds}"
    finally:
        if not done:
            record("cancelled")


@server.tool()
def big(megabytes: int = 17) -> str:
    """Answers with a text of that many MiB."""
    return "x" * (megabytes << 20)


@server.tool()
def fail(message: str = "boom") -> str:
    """Always fails."""
    raise ToolError(message)


class StrictResult(BaseModel):
    count: int
    mode: str
    tag: str


@server.tool()
def strict(
    count: Annotated[int, Field(ge=1, le=10)],
    mode: Literal["fast", "safe"],
    tag: Annotated[str, Field(pattern="^[a-z]+$")],
) -> StrictResult:
    """Checks its arguments strictly."""
    return StrictResult(count=count, mode=mode, tag=tag)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--http":
        port = int(sys.argv[2])
        try:
            server.run("streamable-http", host="127.0.0.1", port=port)
        except TypeError:  # mcp 1.x takes host and port from its settings
            server.settings.host = "127.0.0.1"
            server.settings.port = port
            server.run("streamable-http")
    else:
        server.run()
