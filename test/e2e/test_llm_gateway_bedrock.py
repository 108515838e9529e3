"""Amazon Bedrock behind the gateway, through the real SDKs, against a stand-in that checks what AWS
would: SigV4 recomputed with botocore, Converse bodies by botocore's service model, InvokeModel bodies
by the ``anthropic`` SDK's types, event streams framed with real CRCs (``bedrock_standin``).

Three gateways: one with a Bedrock API key and static AWS credentials from the environment (plus a
failing Bedrock upstream in front of an Anthropic one, and one signing for the wrong region), one on
IRSA (a web identity token file exchanged at the stand-in's STS, for credentials that expire every
few seconds while requests keep coming), one on EKS Pod Identity (the agent's endpoint played by
the stand-in).
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from test.e2e.bedrock_standin import ANTHROPIC_VERSION, BedrockStandIn
from test.e2e.llm_harness import RunningGateway, metric, run_gateway, upstream
from test.e2e.llm_sdk import anthropic_client, openai_client
from test.e2e.llm_standins import StandIn, running

pytestmark = pytest.mark.e2e

API_KEY = "ABSK" + secrets.token_urlsafe(24)
ACCESS_KEY = "AKIA" + secrets.token_hex(8).upper()
SECRET_KEY = secrets.token_urlsafe(30)
ANTHROPIC_KEY = "sk-ant-" + secrets.token_hex(8)
ROLE_ARN = "arn:aws:iam::123456789012:role/llm-gateway"
WEB_IDENTITY = "eyJ" + secrets.token_urlsafe(40)
POD_IDENTITY = secrets.token_urlsafe(32)
LIFETIME = 4.0  # seconds the stand-in's STS and Pod Identity credentials live

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
CLAUDE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-haiku-4-5-v1:0"
NOVA = "amazon.nova-pro-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
HELLO: Any = [{"role": "user", "content": "hello"}]
TOOL_CHAT: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_MESSAGES: Any = {
    "name": "get_weather",
    "description": "Weather by city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# Whatever AWS configuration the machine running the tests has stays out of the gateway.
ISOLATED = {
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SESSION_TOKEN": "",
}


@pytest.fixture(scope="module")
def standins() -> Iterator[dict[str, StandIn]]:
    made: dict[str, StandIn] = {
        "bedrock": BedrockStandIn(
            api_key=API_KEY,
            credentials={ACCESS_KEY: (SECRET_KEY, None)},
            role_arn=ROLE_ARN,
            web_identity=WEB_IDENTITY,
            pod_identity_token=POD_IDENTITY,
            lifetime=LIFETIME,
        ),
        "failing": BedrockStandIn(name="failing", api_key=API_KEY),
        "anthropic": StandIn("anthropic", name="anthropic", key=ANTHROPIC_KEY),
    }
    with running(*made.values()):
        yield made


@pytest.fixture
def bedrock(standins: dict[str, StandIn]) -> BedrockStandIn:
    found = standins["bedrock"]
    assert isinstance(found, BedrockStandIn)
    return found


@pytest.fixture(autouse=True)
def fresh(standins: dict[str, StandIn]) -> Iterator[None]:
    for s in standins.values():
        s.reset()
    yield
    for s in standins.values():
        assert s.invalid == []


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, standins: dict[str, StandIn]
) -> Iterator[RunningGateway]:
    url = standins["bedrock"].url
    region = {"region": "us-east-1"}
    upstreams = [
        upstream("bedrock-key", "bedrock", url, [CLAUDE, NOVA], apiKeyEnv="KB", **region),
        upstream("bedrock-sigv4", "bedrock", url, [CLAUDE_ARN, LLAMA], **region),
        upstream("bedrock-elsewhere", "bedrock", url, ["amazon.titan-text-express-v1"], region="us-west-2"),
        upstream(
            "bedrock-failing", "bedrock", standins["failing"].url, ["failing-only"], apiKeyEnv="KB", **region
        ),
        upstream(
            "anthropic",
            "anthropic",
            standins["anthropic"].url,
            ["claude-sonnet-4-5"],
            apiKeyEnv="KA",
            priority=1,
        ),
    ]
    routing = {
        "failuresBeforeCooldown": 1000,
        "modelMap": [
            {
                "from": "claude-ha",
                "to": "anthropic.claude-sonnet-4-5-20250929-v1:0",
                "upstream": "bedrock-failing",
            },
            {"from": "claude-ha", "to": "claude-sonnet-4-5", "upstream": "anthropic"},
        ],
    }
    env = {
        **ISOLATED,
        "KB": API_KEY,
        "KA": ANTHROPIC_KEY,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    with run_gateway(tmp_path_factory.mktemp("llm-bedrock"), upstreams, env=env, routing=routing) as gw:
        yield gw


def identity_gateway(tmp: Path, url: str, env: dict[str, str]) -> Any:
    upstreams = [upstream("bedrock", "bedrock", url, [CLAUDE, NOVA], region="us-east-1")]
    return run_gateway(tmp, upstreams, env={**ISOLATED, "AWS_REGION": "us-east-1", **env})


def anthropic_calls(standin: StandIn) -> list[Any]:
    return [r for r in standin.requests if "/model/" in r.path]


# ------------------------------------------------------------------------------------------ API key


def test_chat_to_claude_goes_through_invoke_model_with_the_api_key(
    gateway: RunningGateway, bedrock: BedrockStandIn
) -> None:
    completion = openai_client(gateway).chat.completions.create(model=CLAUDE, messages=HELLO, max_tokens=50)
    assert completion.choices[0].message.content == "bedrock says hello"
    assert completion.usage is not None and completion.usage.prompt_tokens == 11
    (received,) = bedrock.requests
    assert received.path == f"/model/{CLAUDE}/invoke"
    assert received.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in received.headers
    assert received.body["anthropic_version"] == ANTHROPIC_VERSION and "model" not in received.body


def test_messages_to_claude_arrive_as_the_client_sent_them_with_betas_in_the_body(
    gateway: RunningGateway, bedrock: BedrockStandIn
) -> None:
    client = anthropic_client(gateway)
    message = client.messages.create(
        model=CLAUDE,
        max_tokens=64,
        system="be brief",
        messages=HELLO,
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
    )
    assert message.content[0].type == "text" and message.content[0].text == "bedrock says hello"
    assert message.model == CLAUDE
    (received,) = bedrock.requests
    assert received.body == {
        "max_tokens": 64,
        "system": "be brief",
        "messages": HELLO,
        "anthropic_version": ANTHROPIC_VERSION,
        "anthropic_beta": ["context-1m-2025-08-07"],
    }


def test_messages_stream_from_claude_is_reframed_as_sse(
    gateway: RunningGateway, bedrock: BedrockStandIn
) -> None:
    with anthropic_client(gateway).messages.stream(model=CLAUDE, max_tokens=64, messages=HELLO) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "bedrock says hello" and len(texts) == 3
    assert final.usage.input_tokens == 11 and final.stop_reason == "end_turn"
    (received,) = bedrock.requests
    assert received.path == f"/model/{CLAUDE}/invoke-with-response-stream"
    assert received.headers["accept"] == "application/vnd.amazon.eventstream"


def test_chat_and_messages_reach_other_models_through_converse(
    gateway: RunningGateway, bedrock: BedrockStandIn
) -> None:
    completion = openai_client(gateway).chat.completions.create(model=NOVA, messages=HELLO, temperature=0.3)
    assert completion.choices[0].message.content == "bedrock says hello"
    assert completion.usage is not None and (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    ) == (11, 3)
    message = anthropic_client(gateway).messages.create(model=NOVA, max_tokens=32, messages=HELLO)
    assert message.content[0].type == "text" and message.content[0].text == "bedrock says hello"
    assert message.usage.input_tokens == 11
    chat, messages = bedrock.requests
    assert chat.path == messages.path == f"/model/{NOVA}/converse"
    assert chat.body["inferenceConfig"] == {"temperature": 0.3}
    assert messages.body["inferenceConfig"] == {"maxTokens": 32}
    response = openai_client(gateway).responses.create(model=NOVA, input="hello")
    assert response.output_text == "bedrock says hello"


@pytest.mark.parametrize("model", [NOVA, CLAUDE])
def test_tool_calls_round_trip_from_chat(gateway: RunningGateway, model: str) -> None:
    client = openai_client(gateway)
    first = client.chat.completions.create(model=model, messages=HELLO, tools=[TOOL_CHAT])
    (call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and orjson.loads(call.function.arguments) == {"city": "Paris"}
    follow = [
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"},
    ]
    second = client.chat.completions.create(model=model, messages=follow, tools=[TOOL_CHAT])
    assert second.choices[0].message.content == "bedrock got the tool result: 18C, sunny"


@pytest.mark.parametrize("model", [NOVA, CLAUDE])
def test_chat_streams_with_tool_calls_and_usage(gateway: RunningGateway, model: str) -> None:
    client = openai_client(gateway)
    with client.chat.completions.stream(
        model=model, messages=HELLO, tools=[TOOL_CHAT], stream_options={"include_usage": True}
    ) as stream:
        completion = stream.get_final_completion()
    (call,) = completion.choices[0].message.tool_calls or []
    assert (call.function.name, orjson.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert completion.usage is not None and completion.usage.prompt_tokens == 11
    with client.chat.completions.stream(model=model, messages=HELLO) as stream:
        assert stream.get_final_completion().choices[0].message.content == "bedrock says hello"


def test_messages_stream_from_converse_with_a_tool(gateway: RunningGateway) -> None:
    with anthropic_client(gateway).messages.stream(
        model=NOVA, max_tokens=64, messages=HELLO, tools=[TOOL_MESSAGES]
    ) as stream:
        final = stream.get_final_message()
    (block,) = final.content
    assert block.type == "tool_use" and block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 5


def test_usage_is_counted_for_invoke_and_converse_streams(gateway: RunningGateway) -> None:
    def tokens(model: str) -> float:
        return metric(gateway.metrics(), "agentkube_llm_tokens_total", model=model, kind="input")

    before = (tokens(CLAUDE), tokens(NOVA))
    with openai_client(gateway).chat.completions.stream(model=CLAUDE, messages=HELLO) as stream:
        stream.get_final_completion()
    with anthropic_client(gateway).messages.stream(model=NOVA, max_tokens=9, messages=HELLO) as s:
        s.get_final_message()
    deadline = time.monotonic() + 10
    while (tokens(CLAUDE), tokens(NOVA)) != (before[0] + 11, before[1] + 11) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tokens(CLAUDE), tokens(NOVA)) == (before[0] + 11, before[1] + 11)


def test_an_exception_mid_stream_ends_the_clients_stream_with_its_error(
    gateway: RunningGateway, bedrock: BedrockStandIn
) -> None:
    bedrock.stream_exception("throttlingException")
    with (
        pytest.raises(anthropic.APIStatusError, match="throttlingException on purpose"),
        anthropic_client(gateway).messages.stream(model=NOVA, max_tokens=9, messages=HELLO) as stream,
    ):
        stream.get_final_message()
    bedrock.stream_exception("modelStreamErrorException")
    with (
        pytest.raises(openai.APIError, match="modelStreamErrorException on purpose"),
        openai_client(gateway).chat.completions.stream(model=CLAUDE, messages=HELLO) as stream_,
    ):
        stream_.get_final_completion()


def test_bedrock_errors_reach_each_client_as_its_sdk_error(
    gateway: RunningGateway, bedrock: BedrockStandIn
) -> None:
    bedrock.fail(400)
    with pytest.raises(anthropic.BadRequestError, match="failed on purpose") as e:
        anthropic_client(gateway).messages.create(model=NOVA, max_tokens=9, messages=HELLO)
    assert e.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    bedrock.fail(403)
    with pytest.raises(openai.PermissionDeniedError, match="failed on purpose"):
        openai_client(gateway).chat.completions.create(model=CLAUDE, messages=HELLO)


# ------------------------------------------------------------------------------------------- SigV4


def test_static_credentials_sign_with_sigv4(gateway: RunningGateway, bedrock: BedrockStandIn) -> None:
    completion = openai_client(gateway).chat.completions.create(model=LLAMA, messages=HELLO)
    assert completion.choices[0].message.content == "bedrock says hello"
    message = anthropic_client(gateway).messages.create(model=CLAUDE_ARN, max_tokens=9, messages=HELLO)
    assert message.content[0].type == "text"
    with anthropic_client(gateway).messages.stream(model=CLAUDE_ARN, max_tokens=9, messages=HELLO) as stream:
        assert stream.get_final_message().stop_reason == "end_turn"
    assert bedrock.rejected == []
    llama, claude, streamed = bedrock.requests
    assert llama.path == f"/model/{LLAMA}/converse"
    assert claude.path == "/model/" + CLAUDE_ARN.replace("/", "%2F") + "/invoke"
    assert streamed.path.endswith("/invoke-with-response-stream")
    for received in (llama, claude, streamed):
        assert received.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
        assert "/us-east-1/bedrock/aws4_request" in received.headers["authorization"]


def test_a_signature_for_the_wrong_region_is_refused_by_bedrock(
    gateway: RunningGateway, bedrock: BedrockStandIn
) -> None:
    with pytest.raises(anthropic.PermissionDeniedError, match="scoped to a valid region"):
        anthropic_client(gateway).messages.create(
            model="amazon.titan-text-express-v1", max_tokens=9, messages=HELLO
        )
    assert bedrock.rejected and bedrock.rejected[0].startswith("InvalidSignatureException")


def same_but_version(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """The two InvokeModel bodies are equal but for ``anthropic_version``: the gateway sends Bedrock's
    documented ``bedrock-2023-05-31``, the installed SDK its own API version (``2026-10-21``)."""
    from anthropic._constants import ANTHROPIC_API_VERSION

    assert ours["anthropic_version"] == ANTHROPIC_VERSION
    assert theirs["anthropic_version"] in (ANTHROPIC_VERSION, ANTHROPIC_API_VERSION)
    return {**ours, "anthropic_version": None} == {**theirs, "anthropic_version": None}


def test_the_gateway_sends_what_anthropic_bedrock_sends(
    gateway: RunningGateway, bedrock: BedrockStandIn
) -> None:
    params: dict[str, Any] = {
        "max_tokens": 128,
        "system": "be brief",
        "messages": HELLO,
        "tools": [TOOL_MESSAGES],
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "u-1"},
        "extra_headers": {"anthropic-beta": "interleaved-thinking-2025-05-14"},
    }
    sdk = anthropic.AnthropicBedrock(
        aws_access_key=ACCESS_KEY,
        aws_secret_key=SECRET_KEY,
        aws_region="us-east-1",
        base_url=bedrock.url,
        max_retries=0,
    )
    for model in (CLAUDE, CLAUDE_ARN):
        bedrock.reset()
        direct = sdk.messages.create(model=model, **params)
        through = anthropic_client(gateway).messages.create(model=model, **params)
        assert direct.content[0].type == through.content[0].type == "tool_use"
        ours, theirs = bedrock.requests[1], bedrock.requests[0]
        assert ours.path == theirs.path
        assert same_but_version(ours.body, theirs.body)
        bedrock.reset()
        with sdk.messages.stream(model=model, **params) as s:
            direct_final = s.get_final_message()  # the SDK's own event-stream decoder reads our frames
        with anthropic_client(gateway).messages.stream(model=model, **params) as s:
            through_final = s.get_final_message()
        assert direct_final.content[0].type == through_final.content[0].type == "tool_use"
        ours, theirs = bedrock.requests[1], bedrock.requests[0]
        assert ours.path == theirs.path and same_but_version(ours.body, theirs.body)
    assert bedrock.rejected == []


# ---------------------------------------------------------------------------------------- failover


def test_a_failing_bedrock_upstream_fails_over_to_anthropic(
    gateway: RunningGateway, standins: dict[str, StandIn]
) -> None:
    def failovers() -> float:
        return metric(gateway.metrics(), "agentkube_llm_failovers_total", upstream="bedrock-failing")

    before = failovers()
    standins["failing"].fail(503, times=2)
    message = anthropic_client(gateway).messages.create(model="claude-ha", max_tokens=9, messages=HELLO)
    assert message.content[0].type == "text" and message.content[0].text == "anthropic says hello"
    completion = openai_client(gateway).chat.completions.create(model="claude-ha", messages=HELLO)
    assert completion.choices[0].message.content == "anthropic says hello"
    assert len(standins["failing"].requests) == 2 and len(standins["anthropic"].requests) == 2
    assert standins["anthropic"].requests[0].body["model"] == "claude-sonnet-4-5"
    assert failovers() == before + 2
    # Healthy again: Bedrock answers itself.
    message = anthropic_client(gateway).messages.create(model="claude-ha", max_tokens=9, messages=HELLO)
    assert message.content[0].type == "text" and message.content[0].text == "failing says hello"


def test_no_credential_reaches_the_gateways_log(gateway: RunningGateway) -> None:
    log = gateway.log()
    for secret in (API_KEY, SECRET_KEY, ANTHROPIC_KEY):
        assert secret not in log


# ------------------------------------------------------------------------------- workload identity


def keep_asking(gw: RunningGateway, seconds: float) -> int:
    """Requests of every kind for ``seconds``; each must succeed. Returns how many were made."""
    chat, messages = openai_client(gw), anthropic_client(gw)
    deadline, made = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        kind = made % 4
        if kind == 0:
            assert chat.chat.completions.create(model=NOVA, messages=HELLO).choices[0].message.content
        elif kind == 1:
            assert messages.messages.create(model=CLAUDE, max_tokens=9, messages=HELLO).content
        elif kind == 2:
            with messages.messages.stream(model=NOVA, max_tokens=9, messages=HELLO) as s:
                assert s.get_final_message().stop_reason == "end_turn"
        else:
            with chat.chat.completions.stream(model=CLAUDE, messages=HELLO) as c:
                assert c.get_final_completion().choices[0].message.content
        made += 1
        time.sleep(0.05)
    return made


def test_irsa_credentials_expire_mid_run_and_are_refreshed_without_a_failed_request(
    tmp_path: Path, bedrock: BedrockStandIn
) -> None:
    token = tmp_path / "token"
    token.write_text(WEB_IDENTITY)
    env = {
        "AWS_ROLE_ARN": ROLE_ARN,
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
        "AWS_ROLE_SESSION_NAME": "llm-gateway",
        "AWS_ENDPOINT_URL_STS": bedrock.url,
    }
    with identity_gateway(tmp_path, bedrock.url, env) as gw:
        made = keep_asking(gw, 2.5 * LIFETIME)
        log = gw.log()
    assert made >= 20
    assert bedrock.issued["sts"] >= 3, "credentials living 4 s over a 10 s run are fetched at least 3 times"
    assert bedrock.rejected == []
    calls = [r for r in bedrock.requests if r.path.startswith("/model/")]
    keys = {r.headers["authorization"].split("Credential=")[1].split("/")[0] for r in calls}
    assert len(keys) >= 3 and all(k.startswith("ASIASTS") for k in keys)
    assert all("x-amz-security-token" in r.headers for r in calls)
    for issued in bedrock.known.values():
        assert issued.secret not in log and (issued.token is None or issued.token not in log)
    assert WEB_IDENTITY not in log


def test_eks_pod_identity_credentials_are_fetched_and_refreshed(
    tmp_path: Path, bedrock: BedrockStandIn
) -> None:
    token = tmp_path / "eks-pod-identity-token"
    token.write_text(POD_IDENTITY)
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{bedrock.url}/pod-identity",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token),
    }
    with identity_gateway(tmp_path, bedrock.url, env) as gw:
        keep_asking(gw, 1.5 * LIFETIME)
    assert bedrock.issued["pod-identity"] >= 2
    assert bedrock.rejected == []


def test_a_bedrock_upstream_without_credentials_fails_over_to_the_next(
    tmp_path: Path, standins: dict[str, StandIn]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the STS endpoint is down
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    token = tmp_path / "token"
    token.write_text(WEB_IDENTITY)
    upstreams = [
        upstream("bedrock", "bedrock", standins["bedrock"].url, ["anthropic.claude-ha"], region="us-east-1"),
        upstream(
            "anthropic",
            "anthropic",
            standins["anthropic"].url,
            ["claude-sonnet-4-5"],
            apiKeyEnv="KA",
            priority=1,
        ),
    ]
    routing = {
        "modelMap": [
            {"from": "claude-ha", "to": "anthropic.claude-ha", "upstream": "bedrock"},
            {"from": "claude-ha", "to": "claude-sonnet-4-5", "upstream": "anthropic"},
        ]
    }
    env = {
        **ISOLATED,
        "KA": ANTHROPIC_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ROLE_ARN": ROLE_ARN,
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
        "AWS_ENDPOINT_URL_STS": down,
    }
    with run_gateway(tmp_path, upstreams, env=env, routing=routing) as gw:
        message = anthropic_client(gw).messages.create(model="claude-ha", max_tokens=9, messages=HELLO)
        assert message.content[0].type == "text" and message.content[0].text == "anthropic says hello"
        assert (
            metric(gw.metrics(), "agentkube_llm_failovers_total", upstream="bedrock", reason="credentials")
            == 1
        )
    assert anthropic_calls(standins["bedrock"]) == []
