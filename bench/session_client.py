#!/usr/bin/env python3
"""What a user sees: MCP sessions against a real FastMCP server, through two fronts.

The official `mcp` SDK client (protocol 2025-11-25: initialize, server-assigned
Mcp-Session-Id, SSE answers as FastMCP sends them) holds one session open per front and
calls `tools/call get_weather` on them in turn (A, B, B, A, …: neither front always goes
first), timing each call as the agent sees it. Then it runs whole short sessions
(connect, initialize, list tools, `--session-calls` calls, close) in turn the same way.

Prints one JSON object: {"calls": {front: [seconds, …]}, "sessions": {front: [seconds, …]}}.

  python bench/session_client.py --front A=http://127.0.0.1:10040/mcp \
      --front B=http://127.0.0.1:10041/mcp --calls 400 --sessions 20 --session-calls 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


@contextlib.asynccontextmanager
async def session(url: str):
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy", read_timeout_seconds=30.0) as client:
            yield client


async def call(client: Client, i: int) -> float:
    started = time.perf_counter()
    result = await client.call_tool("get_weather", {"city": f"city-{i}"})
    elapsed = time.perf_counter() - started
    if result.is_error:
        raise RuntimeError(f"tools/call failed: {result}")
    return elapsed


async def whole_session(url: str, calls: int) -> float:
    started = time.perf_counter()
    async with session(url) as client:
        await client.list_tools()
        for i in range(calls):
            await call(client, i)
    return time.perf_counter() - started


def turns(fronts: list[str], rounds: int):
    """A, B, B, A, A, B…: each front first in half of the rounds."""
    for r in range(rounds):
        yield r, (fronts if r % 2 == 0 else list(reversed(fronts)))


async def main_async(args: argparse.Namespace) -> dict:
    urls = dict(f.split("=", 1) for f in args.front)
    fronts = list(urls)
    calls: dict[str, list[float]] = {f: [] for f in fronts}
    sessions: dict[str, list[float]] = {f: [] for f in fronts}
    async with contextlib.AsyncExitStack() as stack:
        clients = {f: await stack.enter_async_context(session(urls[f])) for f in fronts}
        for i in range(args.warmup):
            for f in fronts:
                await call(clients[f], i)
        for r, order in turns(fronts, args.calls):
            for f in order:
                calls[f].append(await call(clients[f], r))
    for r, order in turns(fronts, args.sessions):
        for f in order:
            sessions[f].append(await whole_session(urls[f], args.session_calls))
    return {"calls": calls, "sessions": sessions, "session_calls": args.session_calls}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--front", action="append", required=True, help="NAME=URL of a front's MCP endpoint (two or more)")
    p.add_argument("--calls", type=int, default=400, help="timed tools/call per front (default 400)")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls per front first (default 20)")
    p.add_argument("--sessions", type=int, default=20, help="whole sessions per front (default 20)")
    p.add_argument("--session-calls", type=int, default=10, help="tools/call in each whole session (default 10)")
    args = p.parse_args()
    json.dump(asyncio.run(main_async(args)), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
