"""Request translation in every direction, checked against the target SDK's own request types."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentkube.dataplane.llm import translate
from agentkube.dataplane.llm.apis import API, error_body
from agentkube.dataplane.llm.translate import TranslationError
from test.unit.dataplane.llm.test_translate_samples import (
    APIS,
    CHAT,
    CHAT_REQUEST,
    MESSAGES,
    MESSAGES_REQUEST,
    PAIRS,
    PNG,
    REQUESTS,
    RESPONSES,
    RESPONSES_REQUEST,
    WEATHER_SCHEMA,
    check_request,
)


def _conversation(api: API, body: dict[str, Any]) -> dict[str, Any]:
    """What the sample conversation says, read back from a request of ``api``, API-neutrally."""
    if api == CHAT:
        messages = body["messages"]
        return {
            "system": messages[0]["content"],
            "user_text": messages[1]["content"][0]["text"],
            "image_url": messages[1]["content"][1]["image_url"]["url"],
            "image_data": messages[1]["content"][2]["image_url"]["url"],
            "assistant_text": messages[2]["content"],
            "call": (messages[2]["tool_calls"][0]["id"], messages[2]["tool_calls"][0]["function"]["name"]),
            "arguments": messages[2]["tool_calls"][0]["function"]["arguments"].replace(" ", ""),
            "result": (messages[3]["tool_call_id"], messages[3]["content"]),
            "tool": (body["tools"][0]["function"]["name"], body["tools"][0]["function"]["parameters"]),
            "max_tokens": body["max_completion_tokens"],
        }
    if api == RESPONSES:
        items = body["input"]
        return {
            "system": body["instructions"],
            "user_text": items[0]["content"][0]["text"],
            "image_url": items[0]["content"][1]["image_url"],
            "image_data": items[0]["content"][2]["image_url"],
            "assistant_text": items[1]["content"],
            "call": (items[2]["call_id"], items[2]["name"]),
            "arguments": items[2]["arguments"].replace(" ", ""),
            "result": (items[3]["call_id"], items[3]["output"]),
            "tool": (body["tools"][0]["name"], body["tools"][0]["parameters"]),
            "max_tokens": body["max_output_tokens"],
        }
    messages = body["messages"]
    source = messages[0]["content"][2]["source"]
    result = messages[2]["content"][0]
    return {
        "system": body["system"],
        "user_text": messages[0]["content"][0]["text"],
        "image_url": messages[0]["content"][1]["source"]["url"],
        "image_data": f"data:{source['media_type']};base64,{source['data']}",
        "assistant_text": messages[1]["content"][0]["text"],
        "call": (messages[1]["content"][1]["id"], messages[1]["content"][1]["name"]),
        "arguments": '{"city":"Paris"}' if messages[1]["content"][1]["input"] == {"city": "Paris"} else "?",
        "result": (
            result["tool_use_id"],
            result["content"] if isinstance(result["content"], str) else result["content"][0]["text"],
        ),
        "tool": (body["tools"][0]["name"], body["tools"][0]["input_schema"]),
        "max_tokens": body["max_tokens"],
    }


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_a_tool_round_trip_request_translates_to_a_valid_sdk_request(src: API, dst: API) -> None:
    body = copy.deepcopy(REQUESTS[src])
    out = translate.request(body, src, dst, "upstream-model")
    check_request(dst, out)
    assert out["model"] == "upstream-model"
    assert _conversation(dst, out) == _conversation(src, REQUESTS[src])
    assert body == REQUESTS[src], "the client's body is not changed in place"


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_a_streaming_request_stays_a_stream_with_usage(src: API, dst: API) -> None:
    out = translate.request({**REQUESTS[src], "stream": True}, src, dst, "m")
    check_request(dst, out)
    assert out["stream"] is True
    if dst == CHAT:
        assert out["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("api", [CHAT, RESPONSES, MESSAGES])
def test_same_api_rewrites_only_the_model(api: API) -> None:
    out = translate.request(REQUESTS[api], api, api, "alias-target")
    assert out == {**REQUESTS[api], "model": "alias-target"}


def test_temperature_is_clamped_to_anthropic_range_not_scaled() -> None:
    for given, sent in [(0.0, 0.0), (0.2, 0.2), (1.0, 1.0), (1.7, 1.0)]:
        out = translate.request({**CHAT_REQUEST, "temperature": given}, CHAT, MESSAGES, "m")
        assert out["temperature"] == sent
    out = translate.request({**MESSAGES_REQUEST, "temperature": 0.3}, MESSAGES, CHAT, "m")
    assert out["temperature"] == 0.3


def test_max_tokens_defaults_for_anthropic_and_maps_for_openai() -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    assert translate.request(body, CHAT, MESSAGES, "m")["max_tokens"] == 4096
    assert translate.request(body, CHAT, MESSAGES, "m", default_max_tokens=900)["max_tokens"] == 900
    assert translate.request({**body, "max_tokens": 77}, CHAT, MESSAGES, "m")["max_tokens"] == 77
    out = translate.request(MESSAGES_REQUEST, MESSAGES, CHAT, "m")
    assert out["max_completion_tokens"] == 256 and "max_tokens" not in out


def test_system_prompts_lead_and_later_system_messages_stay_in_place() -> None:
    body = {
        "model": "x",
        "messages": [
            {"role": "system", "content": "One."},
            {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Now answer in French."},
            {"role": "user", "content": "again"},
        ],
    }
    out = translate.request(body, CHAT, MESSAGES, "m")
    check_request(MESSAGES, out)
    assert out["system"] == [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]
    assert [m["role"] for m in out["messages"]] == ["user", "system", "user"]
    responses = translate.request(body, CHAT, RESPONSES, "m")
    check_request(RESPONSES, responses)
    assert responses["instructions"] == "One.\n\nTwo."
    assert responses["input"][1] == {"type": "message", "role": "system", "content": "Now answer in French."}
    back = translate.request(out, MESSAGES, CHAT, "m")
    assert [m["role"] for m in back["messages"]] == ["system", "user", "system", "user"]


@pytest.mark.parametrize(
    ("src", "body", "field"),
    [
        (CHAT, {**CHAT_REQUEST, "n": 2}, "n"),
        (CHAT, {**CHAT_REQUEST, "logprobs": True}, "logprobs"),
        (CHAT, {**CHAT_REQUEST, "frequency_penalty": 0.5}, "frequency_penalty"),
        (CHAT, {**CHAT_REQUEST, "response_format": {"type": "json_object"}}, "response_format.type"),
        (CHAT, {**CHAT_REQUEST, "functions": [{"name": "f"}]}, "functions"),
        (CHAT, {**CHAT_REQUEST, "mystery": 1}, "mystery"),
        (CHAT, {**CHAT_REQUEST, "verbosity": "low"}, "verbosity"),
        (MESSAGES, {**MESSAGES_REQUEST, "top_k": 5}, "top_k"),
        (
            MESSAGES,
            {**MESSAGES_REQUEST, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools[0].type",
        ),
        (
            MESSAGES,
            {
                **MESSAGES_REQUEST,
                "messages": [*MESSAGES_REQUEST["messages"], {"role": "assistant", "content": "{"}],
            },
            "messages",
        ),
        (RESPONSES, {**RESPONSES_REQUEST, "previous_response_id": "resp_1"}, "previous_response_id"),
        (RESPONSES, {**RESPONSES_REQUEST, "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ],
)
def test_what_changes_the_answer_and_cannot_be_translated_is_refused_naming_the_field(
    src: API, body: dict[str, Any], field: str
) -> None:
    dst: API = MESSAGES if src != MESSAGES else CHAT
    with pytest.raises(TranslationError) as caught:
        translate.request(body, src, dst, "m")
    assert caught.value.field == field
    assert caught.value.status == 400
    assert field in str(caught.value)


def test_a_translation_error_renders_in_the_clients_envelope() -> None:
    with pytest.raises(TranslationError) as caught:
        translate.request({**CHAT_REQUEST, "n": 3}, CHAT, MESSAGES, "m")
    assert b'"param":"n"' in error_body(CHAT, caught.value)
    assert b'"invalid_request_error"' in error_body(MESSAGES, caught.value)


def test_stop_sequences_cannot_go_to_responses_but_map_between_chat_and_messages() -> None:
    with pytest.raises(TranslationError, match="stop"):
        translate.request({**CHAT_REQUEST, "stop": "END"}, CHAT, RESPONSES, "m")
    with pytest.raises(TranslationError, match="stop"):
        translate.request({**MESSAGES_REQUEST, "stop_sequences": ["END"]}, MESSAGES, RESPONSES, "m")
    assert translate.request({**CHAT_REQUEST, "stop": "END"}, CHAT, MESSAGES, "m")["stop_sequences"] == [
        "END"
    ]
    assert translate.request({**MESSAGES_REQUEST, "stop_sequences": ["A", "B"]}, MESSAGES, CHAT, "m")[
        "stop"
    ] == [
        "A",
        "B",
    ]


def test_bookkeeping_fields_are_dropped_towards_anthropic_and_kept_between_openai_apis() -> None:
    body = {**CHAT_REQUEST, "metadata": {"team": "a"}, "store": True, "seed": 7, "service_tier": "auto"}
    out = translate.request(body, CHAT, MESSAGES, "m")
    assert {"store", "seed", "service_tier"}.isdisjoint(out) and out["metadata"] == {"user_id": "user-1"}
    responses = translate.request(body, CHAT, RESPONSES, "m")
    check_request(RESPONSES, responses)
    assert responses["metadata"] == {"team": "a"} and responses["store"] is True and "seed" not in responses
    assert translate.request(CHAT_REQUEST, CHAT, RESPONSES, "m")["store"] is False
    assert translate.request(MESSAGES_REQUEST, MESSAGES, RESPONSES, "m")["user"] == "user-1"


def test_malformed_bodies_are_refused_naming_the_path() -> None:
    cases: list[tuple[API, dict[str, Any], str]] = [
        (CHAT, {"model": "x"}, "messages"),
        (CHAT, {"model": "x", "messages": "hi"}, "messages"),
        (CHAT, {"model": "x", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (CHAT, {"model": "x", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            CHAT,
            {"model": "x", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
        ),
        (MESSAGES, {"model": "x", "max_tokens": 1, "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            MESSAGES,
            {
                "model": "x",
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f"}]}
                ],
            },
            "messages[0].content[0].input",
        ),
        (RESPONSES, {"model": "x", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        (RESPONSES, {"model": "x", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
    ]
    for src, body, path in cases:
        dst: API = CHAT if src == MESSAGES else MESSAGES
        with pytest.raises(TranslationError) as caught:
            translate.request(body, src, dst, "m")
        assert caught.value.field == path, (body, caught.value)


def test_embeddings_are_never_translated() -> None:
    with pytest.raises(TranslationError, match="embeddings"):
        translate.request({"model": "e", "input": "x"}, "openai-embeddings", CHAT, "m")


# --- tool calls ---------------------------------------------------------------------------------


def test_tool_arguments_become_an_object_for_anthropic_and_text_for_openai() -> None:
    body = copy.deepcopy(CHAT_REQUEST)
    body["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"city": "Paris", "days": [1, 2]}'
    out = translate.request(body, CHAT, MESSAGES, "m")
    assert out["messages"][1]["content"][1]["input"] == {"city": "Paris", "days": [1, 2]}
    back = translate.request(out, MESSAGES, CHAT, "m")
    arguments = back["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert arguments == '{"city":"Paris","days":[1,2]}'


def test_tool_arguments_that_are_not_an_object_are_kept_under_a_raw_key() -> None:
    body = copy.deepcopy(CHAT_REQUEST)
    body["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"city": "Par'
    out = translate.request(body, CHAT, MESSAGES, "m")
    assert out["messages"][1]["content"][1]["input"] == {"_raw_arguments": '{"city": "Par'}
    body["messages"][2]["tool_calls"][0]["function"]["arguments"] = ""
    assert translate.request(body, CHAT, MESSAGES, "m")["messages"][1]["content"][1]["input"] == {}


def test_tool_call_ids_are_made_anthropic_safe_the_same_way_for_call_and_result() -> None:
    body = copy.deepcopy(CHAT_REQUEST)
    body["messages"][2]["tool_calls"][0]["id"] = "call:1/a"
    body["messages"][3]["tool_call_id"] = "call:1/a"
    out = translate.request(body, CHAT, MESSAGES, "m")
    check_request(MESSAGES, out)
    assert out["messages"][1]["content"][1]["id"] == "call_1_a"
    assert out["messages"][2]["content"][0]["tool_use_id"] == "call_1_a"


def test_parallel_tool_results_and_following_text_form_one_anthropic_user_turn_results_first() -> None:
    body = copy.deepcopy(CHAT_REQUEST)
    body["messages"][2]["tool_calls"].append(
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Nice"}'},
        }
    )
    body["messages"] += [
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "20C"}]},
        {"role": "user", "content": "And tomorrow?"},
    ]
    out = translate.request(body, CHAT, MESSAGES, "m")
    check_request(MESSAGES, out)
    last = out["messages"][-1]
    assert [b["type"] for b in last["content"]] == ["tool_result", "tool_result", "text"]
    assert [b.get("tool_use_id") for b in last["content"][:2]] == ["call_1", "call_2"]
    responses = translate.request(body, CHAT, RESPONSES, "m")
    check_request(RESPONSES, responses)
    kinds = [i.get("type") for i in responses["input"]]
    assert kinds[-4:] == ["function_call", "function_call_output", "function_call_output", "message"]


def test_tool_results_with_images_move_the_image_to_a_user_message_for_chat() -> None:
    body = copy.deepcopy(MESSAGES_REQUEST)
    body["messages"][2]["content"][0]["content"] = [
        {"type": "text", "text": "screenshot:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]
    body["messages"][2]["content"][0]["is_error"] = True
    out = translate.request(body, MESSAGES, CHAT, "m")
    check_request(CHAT, out)
    tool, user = out["messages"][-2], out["messages"][-1]
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "screenshot:"}
    assert user["role"] == "user"
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    responses = translate.request(body, MESSAGES, RESPONSES, "m")
    check_request(RESPONSES, responses)
    output = responses["input"][-1]["output"]
    assert output[1] == {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"}


@pytest.mark.parametrize(
    ("chat", "anthropic", "responses"),
    [
        ("auto", {"type": "auto"}, "auto"),
        ("required", {"type": "any"}, "required"),
        ("none", {"type": "none"}, "none"),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_maps_in_every_direction(chat: Any, anthropic: Any, responses: Any) -> None:
    assert (
        translate.request({**CHAT_REQUEST, "tool_choice": chat}, CHAT, MESSAGES, "m")["tool_choice"]
        == anthropic
    )
    assert (
        translate.request({**CHAT_REQUEST, "tool_choice": chat}, CHAT, RESPONSES, "m")["tool_choice"]
        == responses
    )
    back = translate.request({**MESSAGES_REQUEST, "tool_choice": anthropic}, MESSAGES, CHAT, "m")
    assert back["tool_choice"] == chat


def test_parallel_tool_calls_off_is_anthropics_disable_parallel_tool_use() -> None:
    out = translate.request({**CHAT_REQUEST, "parallel_tool_calls": False}, CHAT, MESSAGES, "m")
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    body = {k: v for k, v in CHAT_REQUEST.items() if k != "tool_choice"}
    out = translate.request({**body, "parallel_tool_calls": False}, CHAT, MESSAGES, "m")
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    back = translate.request(out, MESSAGES, CHAT, "m")
    assert back["parallel_tool_calls"] is False


# --- images, documents, thinking, structured output -------------------------------------------------


def test_image_urls_pass_as_urls_and_unsupported_images_are_refused() -> None:
    out = translate.request(CHAT_REQUEST, CHAT, MESSAGES, "m")
    assert out["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/paris.png"},
    }
    for url in ("data:image/bmp;base64,Qk0=", "file:///etc/passwd"):
        body = copy.deepcopy(CHAT_REQUEST)
        body["messages"][1]["content"][1]["image_url"]["url"] = url
        with pytest.raises(TranslationError):
            translate.request(body, CHAT, MESSAGES, "m")
    body = copy.deepcopy(RESPONSES_REQUEST)
    body["input"][0]["content"][1] = {"type": "input_image", "file_id": "file-1", "detail": "auto"}
    with pytest.raises(TranslationError, match="file_id"):
        translate.request(body, RESPONSES, MESSAGES, "m")


def test_pdf_documents_translate_inline() -> None:
    body: dict[str, Any] = {
        "model": "x",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ],
    }
    chat = translate.request(body, MESSAGES, CHAT, "m")
    check_request(CHAT, chat)
    assert chat["messages"][0]["content"][0]["file"]["file_data"] == "data:application/pdf;base64,JVBE"
    back = translate.request(chat, CHAT, MESSAGES, "m")
    check_request(MESSAGES, back)
    assert back["messages"][0]["content"][0]["source"] == body["messages"][0]["content"][0]["source"]
    responses = translate.request(body, MESSAGES, RESPONSES, "m")
    check_request(RESPONSES, responses)
    assert responses["input"][0]["content"][0]["file_data"] == "data:application/pdf;base64,JVBE"


def test_reasoning_effort_becomes_adaptive_thinking_with_an_effort() -> None:
    out = translate.request(
        {**CHAT_REQUEST, "reasoning_effort": "high", "messages": CHAT_REQUEST["messages"][:2]},
        CHAT,
        MESSAGES,
        "m",
    )
    check_request(MESSAGES, out)
    assert out["thinking"] == {"type": "adaptive"} and out["output_config"] == {"effort": "high"}
    minimal = translate.request({**CHAT_REQUEST, "reasoning_effort": "minimal"}, CHAT, MESSAGES, "m")
    assert minimal["output_config"] == {"effort": "low"}
    off = translate.request({**CHAT_REQUEST, "reasoning_effort": "none"}, CHAT, MESSAGES, "m")
    assert off["thinking"] == {"type": "disabled"} and "output_config" not in off


def test_thinking_is_disabled_when_the_last_tool_turn_lacks_its_thinking_block() -> None:
    out = translate.request({**CHAT_REQUEST, "reasoning_effort": "high"}, CHAT, MESSAGES, "m")
    assert out["thinking"] == {"type": "disabled"}
    assert out["output_config"] == {"effort": "high"}


def test_anthropic_thinking_budget_maps_to_an_openai_effort_and_history_thinking_is_dropped() -> None:
    body = copy.deepcopy(MESSAGES_REQUEST)
    body["thinking"] = {"type": "enabled", "budget_tokens": 10_000}
    body["max_tokens"] = 20_000
    body["messages"][1]["content"].insert(0, {"type": "thinking", "thinking": "hmm", "signature": "sig"})
    chat = translate.request(body, MESSAGES, CHAT, "m")
    check_request(CHAT, chat)
    assert chat["reasoning_effort"] == "medium"
    assert "hmm" not in str(chat["messages"])
    responses = translate.request(body, MESSAGES, RESPONSES, "m")
    check_request(RESPONSES, responses)
    assert responses["reasoning"] == {"effort": "medium"}
    assert all(item.get("type") != "reasoning" for item in responses["input"])
    for budget, effort in [(2000, "low"), (30_000, "high")]:
        body["thinking"]["budget_tokens"] = budget
        assert translate.request(body, MESSAGES, CHAT, "m")["reasoning_effort"] == effort
    body["thinking"] = {"type": "disabled"}
    assert "reasoning_effort" not in translate.request(body, MESSAGES, CHAT, "m")


def test_signed_thinking_round_trips_through_a_responses_client() -> None:
    body = copy.deepcopy(RESPONSES_REQUEST)
    body["reasoning"] = {"effort": "high"}
    body["input"].insert(
        1,
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Think."}],
            "encrypted_content": "sig-1",
        },
    )
    body["input"].insert(
        2, {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "redacted:XYZ"}
    )
    body["input"].insert(
        3, {"type": "reasoning", "id": "rs_3", "summary": [{"type": "summary_text", "text": "x"}]}
    )
    out = translate.request(body, RESPONSES, MESSAGES, "m")
    check_request(MESSAGES, out)
    assistant = out["messages"][1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": "Think.", "signature": "sig-1"}
    assert assistant[1] == {"type": "redacted_thinking", "data": "XYZ"}
    assert [b["type"] for b in assistant[2:]] == ["text", "tool_use"]
    assert out["thinking"] == {"type": "adaptive"}, "the last tool turn carries its thinking"


def test_unsigned_thinking_is_not_sent_to_anthropic() -> None:
    body = {
        "model": "x",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "reasoning_content": "the user greets"},
            {"role": "user", "content": "bye"},
        ],
    }
    out = translate.request(body, CHAT, MESSAGES, "m")
    check_request(MESSAGES, out)
    assert out["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}


def test_structured_output_maps_between_json_schema_forms() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    chat = {
        **CHAT_REQUEST,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    }
    out = translate.request(chat, CHAT, MESSAGES, "m")
    check_request(MESSAGES, out)
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    responses = translate.request(chat, CHAT, RESPONSES, "m")
    check_request(RESPONSES, responses)
    assert responses["text"] == {
        "format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    }
    back = translate.request(out, MESSAGES, CHAT, "m")
    check_request(CHAT, back)
    assert back["response_format"]["json_schema"]["schema"] == schema


def test_a_minimal_string_request_translates_everywhere() -> None:
    minimal: dict[API, dict[str, Any]] = {
        CHAT: {"model": "x", "messages": [{"role": "user", "content": "Hello"}]},
        RESPONSES: {"model": "x", "input": "Hello"},
        MESSAGES: {"model": "x", "max_tokens": 16, "messages": [{"role": "user", "content": "Hello"}]},
    }
    for src, body in minimal.items():
        for target in APIS:
            if target != src:
                out = translate.request(body, src, target, "m")
                check_request(target, out)
                assert "Hello" in str(out)


def test_tools_without_parameters_get_an_empty_object_schema() -> None:
    body = {
        "model": "x",
        "messages": [{"role": "user", "content": "now?"}],
        "tools": [{"type": "function", "function": {"name": "clock"}}],
    }
    out = translate.request(body, CHAT, MESSAGES, "m")
    check_request(MESSAGES, out)
    assert out["tools"] == [{"name": "clock", "input_schema": {"type": "object", "properties": {}}}]
    assert translate.request(CHAT_REQUEST, CHAT, MESSAGES, "m")["tools"][0]["input_schema"] == WEATHER_SCHEMA
