"""Per-request overhead of the Bedrock provider's ``prepare()``: SigV4 signing against a Bearer key.

Run ``python -m bench.llm_signing [N]`` (default N = 5,000 per case). No network: the provider is built
from a config with static credentials already resolved (what a request sees once the first one has
fetched them off the loop), and each case times ``await provider.prepare(...)`` one call at a time
on the event loop, which is the work a request adds on the loop before its bytes go out:

- Bearer: a Bedrock API key header, the InvokeModel body rewritten (``model``/``stream`` out,
  ``anthropic_version`` in);
- SigV4: the same, plus ``botocore.auth.SigV4Auth`` over the URL, headers and body (SHA-256 of the
  body, the canonical request, four HMACs);
- SigV4 on a Converse body (no rewrite: signing alone) for a small and a 256 KiB body, to show the
  body hash's share.

Printed: median and p99 microseconds per call for each case, and the median SigV4 overhead over Bearer.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time

import orjson
import structlog
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from agentkube.dataplane.llm.apis import CONVERSE, MESSAGES
from agentkube.dataplane.llm.config import Upstream
from agentkube.dataplane.llm.providers.bedrock import AwsCredentials, BedrockProvider

DEFAULT_N = 5_000
CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-pro-v1:0"


def provider(key: bool) -> BedrockProvider:
    config = Upstream.model_validate(
        {
            "name": "aws",
            "provider": "bedrock",
            "models": [CLAUDE],
            "region": "us-east-1",
            **({"apiKeyEnv": "KEY"} if key else {}),
        }
    )
    built = BedrockProvider(config, {"KEY": "ABSK" + "k" * 120})
    if not key:
        creds = Credentials("ASIAEXAMPLEEXAMPLE12", "s" * 40, "t" * 600)  # a session token's size
        built.credentials = AwsCredentials("aws", resolve=lambda: creds)
    return built


def body(size: int) -> bytes:
    text = "word " * (size // 5)
    return orjson.dumps(
        {"model": "x", "max_tokens": 1024, "messages": [{"role": "user", "content": text}], "stream": False}
    )


async def measure(p: BedrockProvider, api: str, model: str, payload: bytes, n: int) -> list[float]:
    await p.prepare(api, model, payload, {}, stream=False)  # type: ignore[arg-type]  # warm: credentials
    times: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        await p.prepare(api, model, payload, {}, stream=False)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    return times


def figures(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1e6, ordered[int(len(ordered) * 0.99) - 1] * 1e6


async def main(n: int) -> None:
    small = body(2_000)
    large = body(256 * 1024)
    bearer, sigv4 = provider(True), provider(False)
    cases = [
        ("Bearer, InvokeModel 2 KB", bearer, MESSAGES, CLAUDE, small),
        ("SigV4, InvokeModel 2 KB", sigv4, MESSAGES, CLAUDE, small),
        ("Bearer, Converse 2 KB", bearer, CONVERSE, NOVA, small),
        ("SigV4, Converse 2 KB", sigv4, CONVERSE, NOVA, small),
        ("Bearer, Converse 256 KB", bearer, CONVERSE, NOVA, large),
        ("SigV4, Converse 256 KB", sigv4, CONVERSE, NOVA, large),
    ]
    medians: dict[str, float] = {}
    print(f"prepare() per call, {n} calls each (microseconds)")
    for name, p, api, model, payload in cases:
        median, p99 = figures(await measure(p, api, model, payload, n))
        medians[name] = median
        print(f"  {name:26s} median {median:8.1f}   p99 {p99:8.1f}")
    for label in ("InvokeModel 2 KB", "Converse 2 KB", "Converse 256 KB"):
        overhead = medians[f"SigV4, {label}"] - medians[f"Bearer, {label}"]
        print(f"SigV4 overhead over Bearer, {label}: median {overhead:.1f} us per request")


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_N))
