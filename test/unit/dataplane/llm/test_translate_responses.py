"""Non-stream answers in every direction, parsed back with the client SDK's own response models."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from agentkube.dataplane.llm import translate
from agentkube.dataplane.llm.apis import API
from agentkube.dataplane.llm.translate import UpstreamError
from test.unit.dataplane.llm.test_translate_samples import (
    ANSWERS,
    ANTHROPIC_MESSAGE,
    CHAT,
    CHAT_COMPLETION,
    MESSAGES,
    PAIRS,
    RESPONSES,
    RESPONSES_RESPONSE,
    check_answer,
)


def _read(api: API, model: Any) -> dict[str, Any]:
    """What a client reads from an SDK answer model of ``api``, API-neutrally."""
    if api == CHAT:
        message = model.choices[0].message
        call = message.tool_calls[0]
        usage = model.usage
        return {
            "text": message.content,
            "call": (call.id, call.function.name, json.loads(call.function.arguments)),
            "stop": model.choices[0].finish_reason,
            "input": usage.prompt_tokens,
            "cached": usage.prompt_tokens_details.cached_tokens,
            "output": usage.completion_tokens,
        }
    if api == RESPONSES:
        calls = [i for i in model.output if i.type == "function_call"]
        usage = model.usage
        return {
            "text": model.output_text,
            "call": (calls[0].call_id, calls[0].name, json.loads(calls[0].arguments)),
            "stop": model.status,
            "input": usage.input_tokens,
            "cached": usage.input_tokens_details.cached_tokens,
            "output": usage.output_tokens,
        }
    texts = [b.text for b in model.content if b.type == "text"]
    uses = [b for b in model.content if b.type == "tool_use"]
    usage = model.usage
    return {
        "text": "".join(texts),
        "call": (uses[0].id, uses[0].name, uses[0].input),
        "stop": model.stop_reason,
        "input": usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens,
        "cached": usage.cache_read_input_tokens,
        "output": usage.output_tokens,
    }


_STOP = {CHAT: "tool_calls", RESPONSES: "completed", MESSAGES: "tool_use"}


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_an_answer_with_a_tool_call_translates_to_what_the_client_sdk_parses(src: API, dst: API) -> None:
    upstream = copy.deepcopy(ANSWERS[src])
    out = translate.response(upstream, src, dst, model="client-alias")
    parsed = check_answer(dst, out)
    assert parsed.model == "client-alias"
    seen = _read(dst, parsed)
    expected = _read(src, check_answer(src, ANSWERS[src]))
    assert seen["text"] == expected["text"] == "Checking the weather."
    assert seen["call"][1:] == expected["call"][1:] == ("get_weather", {"city": "Paris"})
    assert seen["call"][0] == expected["call"][0], "the call id survives, so the client's result matches it"
    assert (seen["input"], seen["cached"], seen["output"]) == (120, 100, 30)
    assert seen["stop"] == _STOP[dst]
    assert upstream == ANSWERS[src]


def test_thinking_from_anthropic_reaches_openai_clients() -> None:
    chat = translate.response(ANTHROPIC_MESSAGE, MESSAGES, CHAT, model="m")
    assert chat["choices"][0]["message"]["reasoning_content"] == "The user wants weather."
    responses = translate.response(ANTHROPIC_MESSAGE, MESSAGES, RESPONSES, model="m")
    reasoning = check_answer(RESPONSES, responses).output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "The user wants weather."
    assert reasoning.encrypted_content == "sig-abc"


def test_reasoning_from_openai_reaches_anthropic_clients_as_thinking() -> None:
    message = check_answer(MESSAGES, translate.response(RESPONSES_RESPONSE, RESPONSES, MESSAGES, model="m"))
    assert message.content[0].type == "thinking"
    assert message.content[0].thinking == "The user wants weather."
    assert message.content[0].signature == "enc-1"
    chat = copy.deepcopy(CHAT_COMPLETION)
    chat["choices"][0]["message"]["reasoning_content"] = "vLLM-style reasoning"
    message = check_answer(MESSAGES, translate.response(chat, CHAT, MESSAGES, model="m"))
    assert (message.content[0].type, message.content[0].thinking, message.content[0].signature) == (
        "thinking",
        "vLLM-style reasoning",
        "",
    )


@pytest.mark.parametrize(
    ("anthropic", "chat", "responses"),
    [
        ("end_turn", "stop", ("completed", None)),
        ("max_tokens", "length", ("incomplete", "max_output_tokens")),
        ("model_context_window_exceeded", "length", ("incomplete", "max_output_tokens")),
        ("stop_sequence", "stop", ("completed", None)),
        ("refusal", "content_filter", ("incomplete", "content_filter")),
        ("pause_turn", "stop", ("completed", None)),
    ],
)
def test_stop_reasons_map_to_the_nearest_equivalent(
    anthropic: str, chat: str, responses: tuple[str, str | None]
) -> None:
    upstream = {**ANTHROPIC_MESSAGE, "content": [{"type": "text", "text": "x"}], "stop_reason": anthropic}
    if anthropic == "stop_sequence":
        upstream["stop_sequence"] = "END"
    out = translate.response(upstream, MESSAGES, CHAT, model="m")
    assert check_answer(CHAT, out).choices[0].finish_reason == chat
    parsed = check_answer(RESPONSES, translate.response(upstream, MESSAGES, RESPONSES, model="m"))
    details = parsed.incomplete_details.reason if parsed.incomplete_details else None
    assert (parsed.status, details) == responses
    if anthropic == "stop_sequence":
        back = translate.response(upstream, MESSAGES, MESSAGES, model="m")
        assert back["stop_sequence"] == "END"


@pytest.mark.parametrize(
    ("finish", "anthropic"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_chat_finish_reasons_map_to_anthropic_stop_reasons(finish: str, anthropic: str) -> None:
    upstream = copy.deepcopy(CHAT_COMPLETION)
    upstream["choices"][0]["finish_reason"] = finish
    assert (
        check_answer(MESSAGES, translate.response(upstream, CHAT, MESSAGES, model="m")).stop_reason
        == anthropic
    )


def test_anthropic_usage_excludes_cache_tokens_that_openai_includes() -> None:
    upstream = {
        **ANTHROPIC_MESSAGE,
        "usage": {
            "input_tokens": 5,
            "cache_creation_input_tokens": 40,
            "cache_read_input_tokens": 100,
            "output_tokens": 7,
        },
    }
    chat = check_answer(CHAT, translate.response(upstream, MESSAGES, CHAT, model="m"))
    assert chat.usage.prompt_tokens == 145
    assert chat.usage.prompt_tokens_details.cached_tokens == 100
    assert chat.usage.prompt_tokens_details.cache_write_tokens == 40
    assert chat.usage.total_tokens == 152
    back = check_answer(MESSAGES, translate.response(chat.model_dump(), CHAT, MESSAGES, model="m"))
    assert (
        back.usage.input_tokens,
        back.usage.cache_creation_input_tokens,
        back.usage.cache_read_input_tokens,
    ) == (
        5,
        40,
        100,
    )


def test_invalid_tool_arguments_from_openai_reach_anthropic_clients_under_a_raw_key() -> None:
    upstream = copy.deepcopy(CHAT_COMPLETION)
    upstream["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = "[1, 2]"
    message = check_answer(MESSAGES, translate.response(upstream, CHAT, MESSAGES, model="m"))
    assert message.content[1].input == {"_raw_arguments": "[1, 2]"}


def test_an_openai_refusal_becomes_text_for_anthropic_and_a_refusal_part_for_responses() -> None:
    upstream = copy.deepcopy(CHAT_COMPLETION)
    upstream["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "I can't help."}
    upstream["choices"][0]["finish_reason"] = "stop"
    message = check_answer(MESSAGES, translate.response(upstream, CHAT, MESSAGES, model="m"))
    assert [(b.type, b.text) for b in message.content] == [("text", "I can't help.")]
    response = check_answer(RESPONSES, translate.response(upstream, CHAT, RESPONSES, model="m"))
    assert response.output[0].content[0].type == "refusal"


def test_a_failed_responses_answer_raises_its_error() -> None:
    failed = {**RESPONSES_RESPONSE, "status": "failed", "error": {"code": "server_error", "message": "boom"}}
    with pytest.raises(UpstreamError) as caught:
        translate.response(failed, RESPONSES, CHAT, model="m")
    assert caught.value.message == "boom" and caught.value.kind == "api_error"


def test_a_malformed_upstream_answer_is_a_bad_gateway() -> None:
    cases: list[tuple[API, dict[str, Any]]] = [
        (CHAT, {"choices": []}),
        (MESSAGES, {"id": "x"}),
        (RESPONSES, {"id": "x"}),
    ]
    for src, body in cases:
        with pytest.raises(UpstreamError) as caught:
            translate.response(body, src, MESSAGES if src != MESSAGES else CHAT, model="m")
        assert caught.value.kind == "bad_gateway"


def test_same_api_answers_get_only_the_client_model_name() -> None:
    out = translate.response(ANTHROPIC_MESSAGE, MESSAGES, MESSAGES, model="alias")
    assert out == {**ANTHROPIC_MESSAGE, "model": "alias"}


def test_ids_keep_the_upstream_id_in_the_clients_prefix() -> None:
    assert translate.response(ANTHROPIC_MESSAGE, MESSAGES, CHAT, model="m")["id"] == "chatcmpl-msg_01ABC"
    assert translate.response(CHAT_COMPLETION, CHAT, MESSAGES, model="m")["id"].startswith(
        "msg_chatcmpl-abc123"
    )
    response = translate.response(CHAT_COMPLETION, CHAT, RESPONSES, model="m")
    assert response["id"] == "resp_chatcmpl-abc123"
    ids = [item["id"] for item in response["output"]]
    assert len(set(ids)) == len(ids)
