"""Throughput as an MCP agent sees it: the official ``mcp`` client (``ClientSession`` over
``stdio_client``) with 50 ``call_tool`` calls in flight, direct and through ``plr proxy``.

This is how issue #20 measured the proxy (0.25–0.4× direct then). The connections are open side
by side in one event loop and driven in alternating rounds (direct, proxy, then the reverse order),
so a machine that gets busier or quieter moves both alike; the ratio is the median over rounds of
(proxy calls/s ÷ direct calls/s of the paired round). Every answer is checked against its call.

The raw-client rows of ``bench_proxy`` drive the same server with a minimal client that costs
almost nothing per call: that is the proxy's cost with nothing in front of it; this one is the
proxy's cost next to the client an agent actually runs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from contextlib import AsyncExitStack
from typing import Any


async def _round(session: Any, tag: str, n: int, window: int) -> tuple[float, int]:
    gate = asyncio.Semaphore(window)

    async def one(k: int) -> bool:
        text = f"{tag}-{k}"
        async with gate:
            res = await session.call_tool("echo", {"text": text})
        return not res.is_error and bool(res.content) and getattr(res.content[0], "text", None) == text

    t0 = time.perf_counter()
    oks = await asyncio.gather(*(one(k) for k in range(n)))
    elapsed = time.perf_counter() - t0
    return n / elapsed if elapsed > 0 else 0.0, oks.count(False)


async def _measure(cmds: dict[str, tuple[list[str], dict[str, str]]], calls: int, rounds: int, window: int) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    per_round = max(window, calls // rounds)
    async with AsyncExitStack() as stack:
        sessions: dict[str, Any] = {}
        for name, (cmd, env) in cmds.items():
            params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=env)
            quiet = stack.enter_context(open(os.devnull, "w"))  # the proxy's banner is not a result
            read, write = await stack.enter_async_context(stdio_client(params, errlog=quiet))
            sessions[name] = await stack.enter_async_context(ClientSession(read, write))
            await sessions[name].initialize()
            await _round(sessions[name], f"warm-{name}", min(per_round, 200), window)
        rates: dict[str, list[float]] = {k: [] for k in sessions}
        bad = dict.fromkeys(sessions, 0)
        for r in range(rounds):
            order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
            for name in order:
                rate, wrong = await _round(sessions[name], f"r{r}-{name}", per_round, window)
                rates[name].append(rate)
                bad[name] += wrong
    return {
        name: {"calls": per_round * rounds, "window": window, "calls_per_s": statistics.median(rates[name]),
               "round_calls_per_s": rates[name], "bad": bad[name]}
        for name in rates
    }  # fmt: skip


def measure(cmds: dict[str, tuple[list[str], dict[str, str]]], calls: int, rounds: int, window: int) -> dict[str, Any]:
    """Calls/s per connection (median over rounds) and the wrong answers; ``cmds`` maps a name to
    (command, environment); the first is the baseline the ratio is taken against."""
    return asyncio.run(_measure(cmds, calls, rounds, window))


def paired_ratio(res: dict[str, Any], base: dict[str, Any]) -> float:
    """The median over rounds of (this round's calls/s ÷ the baseline's round calls/s)."""
    return statistics.median(p / d for p, d in zip(res["round_calls_per_s"], base["round_calls_per_s"]) if d)
