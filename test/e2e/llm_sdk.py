"""The providers' own SDK clients, pointed at a gateway the way the e2e tier talks to it.

Each client validates every answer against the SDK's response types (``_strict_response_validation``)
and never retries (``max_retries=0``), so an answer the SDK would not accept, or a failure the gateway
should have handled itself, fails the test instead of being papered over. ``key`` is the client API
key the gateway checks (``unused`` where the gateway has none configured).
"""

from __future__ import annotations

import anthropic
import openai

from test.e2e.llm_harness import RunningGateway

__all__ = ["anthropic_client", "openai_client"]


def openai_client(gw: RunningGateway, key: str = "unused") -> openai.OpenAI:
    """The OpenAI SDK on the gateway's ``/v1`` (Chat Completions, Responses, embeddings)."""
    return openai.OpenAI(
        base_url=gw.openai_base, api_key=key, max_retries=0, _strict_response_validation=True
    )


def anthropic_client(gw: RunningGateway, key: str = "unused") -> anthropic.Anthropic:
    """The Anthropic SDK on the gateway's root (it adds ``/v1/messages`` itself)."""
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, _strict_response_validation=True)
