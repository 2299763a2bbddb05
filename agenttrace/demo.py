"""`agenttrace demo`: a realistic synthetic fleet through the gateway and the proxy.

Agents call several providers and models, some fail, some are slow, and a few stop sending
heartbeats, so the overview page, Grafana and the alert rules show something within a minute.
Proxy traffic goes to a fake OpenAI-compatible upstream this command serves on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime

import httpx
import uvicorn
from fastapi import FastAPI, Request

from schemas.keys import KeyStore
from schemas.settings import Settings

MODELS = [("openai", "gpt-4o-2024-08-06"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-20250514"),
          ("anthropic", "claude-3-5-haiku-20241022"), ("google", "gemini-2.0-flash"), ("mistral", "mistral-large-latest"),
          ("cohere", "command-r-plus")]


def fake_upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        await asyncio.sleep(random.uniform(0.01, 0.08))
        tin, tout = random.randint(50, 2000), random.randint(10, 600)
        return {"id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "gpt-4o-mini"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}}

    return app


def synthetic_call(rng: random.Random, agent: str, flaky: bool) -> dict:
    provider, model = rng.choice(MODELS)
    slow = rng.random() < 0.05
    status = 200
    if flaky and rng.random() < 0.3 or rng.random() < 0.02:
        status = rng.choice([429, 500, 503])
    return {"event_type": "llm_call", "agent_id": agent, "provider": provider, "model": model,
            "tokens_in": rng.randint(100, 4000), "tokens_out": rng.randint(20, 1200),
            "latency_ms": round(rng.lognormvariate(6.5, 0.5) * (8 if slow else 1), 1),
            "ttft_ms": round(rng.uniform(80, 600), 1), "status_code": status, "source": "sdk",
            "timestamp": datetime.now(UTC).isoformat(), "session_id": f"s-{agent}-{rng.randint(1, 5)}",
            "user_id": f"user-{rng.randint(1, 30)}", "tags": ["demo", f"team:{agent.split('-')[0]}"]}


async def _run(settings: Settings, agents: int, minutes: float) -> dict:
    token, _ = KeyStore(settings.config_path).create("default", name="demo")
    headers = {"authorization": f"Bearer {token}"}
    gateway = f"http://{settings.host}:{settings.gateway_port}"
    proxy = f"http://{settings.host}:{settings.proxy_port}"
    rng = random.Random(42)
    names = [f"{team}-agent-{i}" for i, team in zip(range(agents), ["support", "research", "sales", "ops"] * agents, strict=False)]
    flaky = set(names[:2])
    silent = set(names[-2:])  # these stop sending heartbeats after the first round

    config = uvicorn.Config(fake_upstream(), host="127.0.0.1", port=0, log_config=None, access_log=False)
    upstream = uvicorn.Server(config)
    upstream_task = asyncio.create_task(upstream.serve())
    while not upstream.started:
        await asyncio.sleep(0.05)
    up_port = upstream.servers[0].sockets[0].getsockname()[1]
    sent = {"events": 0, "proxied": 0, "heartbeats": 0, "errors": 0}
    async with httpx.AsyncClient(timeout=10) as client:
        await client.post(f"{gateway}/api/alerts", headers=headers, json={
            "type": "error_rate", "name": "demo error rate", "threshold": 10, "window_minutes": 5, "min_calls": 5})
        for n in names:
            await client.post(f"{gateway}/api/agents/register", headers=headers, json={"agent_id": n, "name": n})
        await client.post(f"{gateway}/api/alerts", headers=headers, json={
            "type": "agent_down", "name": "demo agent down", "duration_minutes": 1})
        deadline = time.monotonic() + minutes * 60
        rounds = 0
        while time.monotonic() < deadline:
            batch = [synthetic_call(rng, a, a in flaky) for a in names for _ in range(rng.randint(1, 4))]
            batch += [{"event_type": "error", "agent_id": a, "error_type": "ToolError", "message": "tool timed out"}
                      for a in flaky if rng.random() < 0.5]
            r = await client.post(f"{gateway}/api/events", headers=headers, json={"events": batch})
            sent["events"] += r.json().get("accepted", 0) if r.status_code < 300 else 0
            sent["errors"] += r.status_code >= 300
            for a in names:
                if a in silent and rounds > 0:
                    continue
                await client.post(f"{gateway}/api/agents/heartbeat", headers=headers, json={"agent_id": a})
                sent["heartbeats"] += 1
            for a in rng.sample(names, k=min(5, len(names))):
                try:
                    r = await client.post(f"{proxy}/v1/chat/completions", json={
                        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                        headers={"authorization": "Bearer sk-demo-upstream", "x-target-url": f"http://127.0.0.1:{up_port}",
                                 "x-agenttrace-agent": a, "x-agenttrace-key": token})
                    sent["proxied"] += r.status_code == 200
                except httpx.HTTPError:
                    sent["errors"] += 1
            rounds += 1
            await asyncio.sleep(1.0)
    upstream.should_exit = True
    await upstream_task
    return sent


def run(settings: Settings, args: argparse.Namespace) -> int:
    sent = asyncio.run(_run(settings, args.agents, args.minutes))
    print(f"demo sent {sent['events']} events, {sent['heartbeats']} heartbeats, {sent['proxied']} proxied calls "
          f"({sent['errors']} failed requests); open http://{settings.host}:{settings.api_port}/")
    return 0 if sent["events"] else 1
