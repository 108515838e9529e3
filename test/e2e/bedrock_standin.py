"""An Amazon Bedrock stand-in on loopback (with the STS and EKS Pod Identity endpoints it needs).

``BedrockStandIn(api_key=..., credentials=...)`` is a ``StandIn`` (same lifecycle, ``requests``,
``invalid``, ``fail(status)``) that serves what bedrock-runtime serves, checking what the real
service would:

- ``POST /model/{modelId}/invoke`` and ``/invoke-with-response-stream``: the Anthropic Messages body
  as InvokeModel takes it, checked against the ``anthropic`` SDK's ``MessageCreateParams`` types
  (with ``model`` and ``stream`` supplied from the path, as the body must not carry them), with
  ``anthropic_version: bedrock-2023-05-31`` required and ``anthropic_beta`` a list of strings.
- ``POST /model/{modelId}/converse`` and ``/converse-stream``: the Converse body, checked with
  botocore's own ``bedrock-runtime`` service model (``botocore.validate.ParamValidator`` on the
  Converse input shape, blobs base64-decoded first, as botocore's REST-JSON parser would).
- Authentication: ``Authorization: Bearer <api_key>``, or SigV4, recomputed with botocore's
  ``SigV4Auth`` from the credentials the stand-in knows (``credentials``, plus those its STS and Pod
  Identity endpoints issued), for service ``bedrock`` in ``region``: a wrong key, region, service,
  body hash, missing session token or expired credential answers 403 as Bedrock does
  (``x-amzn-ErrorType`` and ``{"message"}``).
- Streams are AWS event streams with real CRCs (``frame``), split across writes at odd offsets so
  the gateway's decoder sees messages cut anywhere. ``stream_exception(name)`` makes the next
  stream end with that exception message after its first events.
- ``POST /`` with ``Action=AssumeRoleWithWebIdentity`` plays STS (point ``AWS_ENDPOINT_URL_STS`` at
  the stand-in): it checks ``RoleArn`` and the token (``web_identity``), and issues credentials that
  expire ``lifetime`` seconds later. ``GET /pod-identity`` plays the EKS Pod Identity agent
  (``AWS_CONTAINER_CREDENTIALS_FULL_URI``), checking the ``Authorization`` header against
  ``pod_identity_token``. ``issued`` counts what each issued.

``frame(headers, payload)`` encodes one event-stream message; ``validate_converse`` and
``validate_invoke`` are the body checks, usable on their own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import itertools
import secrets
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from test.e2e.llm_standins import TOOL_ARGUMENTS, StandIn, received, validate

__all__ = [
    "ANTHROPIC_VERSION",
    "BedrockStandIn",
    "Issued",
    "frame",
    "validate_converse",
    "validate_invoke",
    "verify_sigv4",
]

ANTHROPIC_VERSION = "bedrock-2023-05-31"
EVENT_STREAM = "application/vnd.amazon.eventstream"

# ------------------------------------------------------------------------------------ event stream


def _header(name: str, value: bool | int | bytes | str) -> bytes:
    raw = name.encode()
    out = struct.pack(">B", len(raw)) + raw
    if isinstance(value, bool):
        return out + struct.pack(">B", 0 if value else 1)
    if isinstance(value, int):
        return out + struct.pack(">Bi", 4, value)
    if isinstance(value, bytes):
        return out + struct.pack(">BH", 6, len(value)) + value
    encoded = value.encode()
    return out + struct.pack(">BH", 7, len(encoded)) + encoded


def frame(headers: Mapping[str, bool | int | bytes | str], payload: bytes) -> bytes:
    """One AWS event-stream message, both CRC32s computed."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """A Bedrock stream event: JSON payload (with Bedrock's random ``p`` padding)."""
    body = orjson.dumps({**payload, "p": "abcdefghijklmnopqrstuvwxyz"[: 1 + len(event_type) % 20]})
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, body)


def exception_frame(name: str, message: str) -> bytes:
    headers = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, orjson.dumps({"message": message}))


# -------------------------------------------------------------------------------------- validation

_MODEL: Any = None
_MODEL_LOCK = threading.Lock()


def _service_model() -> Any:
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            import botocore.session

            _MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")
        return _MODEL


def _blobs(shape: Any, value: Any, path: str, problems: list[str]) -> Any:
    """``value`` with every blob member base64-decoded (as botocore's REST-JSON parser reads it)."""
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document") or not isinstance(value, dict):
            return value
        return {
            k: _blobs(shape.members[k], v, f"{path}.{k}", problems) if k in shape.members else v
            for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [_blobs(shape.member, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        return {k: _blobs(shape.value, v, f"{path}.{k}", problems) for k, v in value.items()}
    if kind == "blob":
        if not isinstance(value, str):
            problems.append(f"{path}: a blob must be base64 text in JSON")
            return value
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            problems.append(f"{path}: not valid base64")
    return value


def validate_converse(body: Any, model: str, *, stream: bool = False) -> list[str]:
    """The reasons ``body`` is not a Converse (ConverseStream) request by botocore's service model."""
    from botocore.validate import ParamValidator

    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    if "modelId" in body:
        return ["modelId belongs in the path, not the body"]
    shape = _service_model().operation_model("ConverseStream" if stream else "Converse").input_shape
    problems: list[str] = []
    params = _blobs(shape, {"modelId": model, **body}, "", problems)
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        problems.append(report.generate_report())
    return problems


def accepted_versions() -> frozenset[str]:
    """``bedrock-2023-05-31`` (what Bedrock documents, and what the gateway sends), and the version
    the installed ``anthropic`` SDK's ``AnthropicBedrock`` sends instead (its own API version)."""
    from anthropic._constants import ANTHROPIC_API_VERSION

    return frozenset({ANTHROPIC_VERSION, ANTHROPIC_API_VERSION})


def validate_invoke(body: Any, model: str, *, stream: bool) -> list[str]:
    """The reasons ``body`` is not an InvokeModel body for a Claude model (the Messages form)."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    problems = [f"{k} must not be in an InvokeModel body" for k in ("model", "stream") if k in body]
    if body.get("anthropic_version") not in accepted_versions():
        problems.append(
            f"anthropic_version must be {ANTHROPIC_VERSION}, not {body.get('anthropic_version')!r}"
        )
    beta = body.get("anthropic_beta")
    if beta is not None and not (isinstance(beta, list) and all(isinstance(b, str) for b in beta)):
        problems.append("anthropic_beta must be a list of strings")
    rest = {
        k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta", "model", "stream")
    }
    request = {**rest, "model": model, **({"stream": True} if stream else {})}
    return problems + validate("messages", request)


# ------------------------------------------------------------------------------------------ SigV4


@dataclass
class Issued:
    secret: str
    token: str | None
    expires: float | None  # epoch seconds; None: never


def verify_sigv4(
    method: str,
    raw_path: str,
    headers: Mapping[str, str],
    body: bytes,
    known: Mapping[str, Issued],
    *,
    region: str,
    service: str = "bedrock",
    now: float | None = None,
) -> tuple[str, str] | None:
    """None when the request's SigV4 signature is right, else (AWS error type, message)."""
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    fields = dict(p.strip().split("=", 1) for p in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    access_key, date, scope_region, scope_service, terminal = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    issued = known.get(access_key)
    if issued is None:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    if issued.expires is not None and (now or time.time()) >= issued.expires:
        return "ExpiredTokenException", "The security token included in the request is expired"
    if issued.token is not None and lower.get("x-amz-security-token") != issued.token:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    if "x-amz-security-token" in lower and "x-amz-security-token" not in signed:
        return "InvalidSignatureException", "x-amz-security-token is not signed"
    if "host" not in signed or "x-amz-date" not in signed:
        return "InvalidSignatureException", "host and x-amz-date must be signed"
    stamp = lower.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return "IncompleteSignatureException", "X-Amz-Date is malformed"
    if abs(when.timestamp() - (now or time.time())) > 300 or date != stamp[:8]:
        return "InvalidSignatureException", "Signature expired or its date does not match X-Amz-Date"
    request = AWSRequest(
        method=method,
        url=f"http://{lower['host']}{raw_path}",
        data=body,
        headers={h: lower[h] for h in signed},
    )
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(access_key, issued.secret, issued.token), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if (scope_region, scope_service, terminal) != (region, service, "aws4_request"):
        return (
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region ({region}) and service ({service})",
        )
    if not secrets.compare_digest(expected, fields.get("Signature", "")):
        return (
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    return None


# --------------------------------------------------------------------------------------- stand-in

_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


class BedrockStandIn(StandIn):
    """See the module docstring."""

    def __init__(
        self,
        *,
        name: str = "bedrock",
        api_key: str | None = None,
        credentials: Mapping[str, tuple[str, str | None]] | None = None,
        region: str = "us-east-1",
        role_arn: str | None = None,
        web_identity: str | None = None,
        pod_identity_token: str | None = None,
        lifetime: float = 3600.0,
        input_tokens: int = 11,
    ) -> None:
        super().__init__("anthropic", name=name, input_tokens=input_tokens)
        self.api_key = api_key
        self.region = region
        self.role_arn = role_arn
        self.web_identity = web_identity
        self.pod_identity_token = pod_identity_token
        self.lifetime = lifetime
        self.known: dict[str, Issued] = {
            k: Issued(secret, token, None) for k, (secret, token) in (credentials or {}).items()
        }
        self.issued = {"sts": 0, "pod-identity": 0}
        self.rejected: list[str] = []
        self._exceptions: list[str] = []
        self._keys = itertools.count(1)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.rejected.clear()
            self._exceptions.clear()

    def stream_exception(self, name: str = "throttlingException") -> None:
        """End the next stream with exception ``name`` after its first events."""
        with self._lock:
            self._exceptions.append(name)

    # ---------------------------------------------------------------------------------- answers

    def _aws_error(self, status: int, message: str, kind: str | None = None) -> web.Response:
        error_type = kind or _ERROR_TYPES.get(status, "InternalServerException")
        return web.Response(
            status=status,
            body=orjson.dumps({"message": message}),
            content_type="application/json",
            headers={
                "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            },
        )

    def _issue(self, source: str) -> tuple[str, Issued]:
        key = f"ASIA{source[:3].upper()}{next(self._keys):012d}"
        issued = Issued(secrets.token_hex(20), secrets.token_urlsafe(48), time.time() + self.lifetime)
        with self._lock:
            self.known[key] = issued
            self.issued[source] += 1
        return key, issued

    async def _sts(self, raw: bytes) -> web.Response:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if form.get("Action") != "AssumeRoleWithWebIdentity":
            return web.Response(status=400, text=f"stand-in STS: unexpected Action {form.get('Action')!r}")
        if form.get("RoleArn") != self.role_arn or form.get("WebIdentityToken") != self.web_identity:
            return web.Response(
                status=403,
                content_type="text/xml",
                text="<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                "<Message>stand-in STS: wrong role or token</Message></Error></ErrorResponse>",
            )
        key, issued = self._issue("sts")
        assert issued.expires is not None
        expiry = datetime.datetime.fromtimestamp(issued.expires, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        xml = (
            '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult>"
            f"<Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{issued.secret}</SecretAccessKey>"
            f"<SessionToken>{issued.token}</SessionToken><Expiration>{expiry}</Expiration></Credentials>"
            "<SubjectFromWebIdentityToken>system:serviceaccount:team-a:gateway</SubjectFromWebIdentityToken>"
            f"<AssumedRoleUser><Arn>{self.role_arn}/gateway</Arn><AssumedRoleId>AROA:gateway</AssumedRoleId>"
            "</AssumedRoleUser><Audience>sts.amazonaws.com</Audience>"
            "</AssumeRoleWithWebIdentityResult>"
            "<ResponseMetadata><RequestId>stand-in</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        )
        return web.Response(text=xml, content_type="text/xml")

    def _pod_identity(self, request: web.Request) -> web.Response:
        if self.pod_identity_token is None or request.headers.get("Authorization") != self.pod_identity_token:
            return web.json_response({"message": "stand-in Pod Identity: wrong token"}, status=403)
        key, issued = self._issue("pod-identity")
        assert issued.expires is not None
        expiry = datetime.datetime.fromtimestamp(issued.expires, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(
            {
                "AccessKeyId": key,
                "SecretAccessKey": issued.secret,
                "Token": issued.token,
                "Expiration": expiry,
                "AccountId": "123456789012",
            }
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if request.method == "POST" and request.path == "/" and b"Action=" in raw:
            return await self._sts(raw)
        if request.path == "/pod-identity":
            return self._pod_identity(request)
        # The path as sent (percent-encoding kept): the signature covers it.
        raw_path = request.raw_path
        got = received(request, raw, raw_path.split("?", 1)[0])
        body = got.body
        with self._lock:
            self.requests.append(got)
        parts = raw_path.split("?", 1)[0].split("/")
        if len(parts) != 4 or parts[1] != "model" or request.method != "POST":
            return self._aws_error(
                404, f"stand-in: no such operation {request.method} {raw_path}", "UnknownOperationException"
            )
        model, action = unquote(parts[2]), parts[3]
        if action not in ("invoke", "invoke-with-response-stream", "converse", "converse-stream"):
            return self._aws_error(404, f"stand-in: no such operation {action}", "UnknownOperationException")
        denied = self._authenticate(request, raw_path, raw)
        if denied is not None:
            with self._lock:
                self.rejected.append(f"{denied[0]}: {denied[1]}")
            return self._aws_error(403, denied[1], denied[0])
        stream = action.endswith("stream")
        converse = action.startswith("converse")
        problems = (
            validate_converse(body, model, stream=stream)
            if converse
            else validate_invoke(body, model, stream=stream)
        )
        if problems:
            with self._lock:
                self.invalid.append(f"{raw_path}: {'; '.join(problems)}")
            return self._aws_error(400, "stand-in: request failed validation: " + "; ".join(problems))
        assert isinstance(body, dict)
        plan = self._next_plan()
        if plan is not None and plan.mode == "fail":
            return self._aws_error(plan.status, f"stand-in {self.name} failed on purpose")
        if plan is not None and plan.mode == "hang":
            await asyncio.sleep(self.hang_seconds)
        with self._lock:
            exception = self._exceptions.pop(0) if self._exceptions and stream else None
        if converse:
            answer = self._converse_answer(body)
            if not stream:
                return web.json_response(self._converse_whole(answer))
            frames = self._converse_frames(answer)
        else:
            answer = self._answer("messages", body)
            if not stream:
                return web.json_response(self._whole("messages", model, answer))
            frames = self._invoke_frames(model, answer)
        if exception is not None:
            frames = [
                *frames[:2],
                exception_frame(exception, f"stand-in {self.name}: {exception} on purpose"),
            ]
        return await self._event_stream(request, frames)

    def _authenticate(self, request: web.Request, raw_path: str, raw: bytes) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            if self.api_key is not None and secrets.compare_digest(header, f"Bearer {self.api_key}"):
                return None
            return "UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined prefix"
        with self._lock:
            known = dict(self.known)
        return verify_sigv4(request.method, raw_path, request.headers, raw, known, region=self.region)

    # ------------------------------------------------------------------------------------ converse

    def _converse_answer(self, body: dict[str, Any]) -> tuple[str, str | None]:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        results = [b["toolResult"] for b in last.get("content", []) if "toolResult" in b]
        if last.get("role") == "user" and results:
            text = "".join(c.get("text", "") for c in results[-1].get("content", []))
            return f"{self.name} got the tool result: {text}", None
        tools = (body.get("toolConfig") or {}).get("tools") or []
        if tools:
            return "", str(tools[0]["toolSpec"]["name"])
        return f"{self.name} says hello", None

    def _converse_usage(self, output: int) -> dict[str, Any]:
        n = self.input_tokens
        return {"inputTokens": n, "outputTokens": output, "totalTokens": n + output}

    def _converse_whole(self, answer: tuple[str, str | None]) -> dict[str, Any]:
        text, tool = answer
        content: list[dict[str, Any]] = (
            [{"toolUse": {"toolUseId": self._id("tooluse_"), "name": tool, "input": TOOL_ARGUMENTS}}]
            if tool
            else [{"text": text}]
        )
        output = max(1, len(text.split())) if text else 5
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": "tool_use" if tool else "end_turn",
            "usage": self._converse_usage(output),
            "metrics": {"latencyMs": 42},
        }

    def _converse_frames(self, answer: tuple[str, str | None]) -> list[bytes]:
        text, tool = answer
        frames = [event_frame("messageStart", {"role": "assistant"})]
        if tool:
            start = {"toolUse": {"toolUseId": self._id("tooluse_"), "name": tool}}
            frames.append(event_frame("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
            arguments = orjson.dumps(TOOL_ARGUMENTS).decode()
            for piece in (arguments[:5], arguments[5:]):
                delta = {"toolUse": {"input": piece}}
                frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}))
        else:
            for word in [w + " " for w in text.split(" ")[:-1]] + text.split(" ")[-1:]:
                frames.append(
                    event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word}})
                )
        frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
        frames.append(event_frame("messageStop", {"stopReason": "tool_use" if tool else "end_turn"}))
        output = max(1, len(text.split())) if text else 5
        frames.append(
            event_frame("metadata", {"usage": self._converse_usage(output), "metrics": {"latencyMs": 42}})
        )
        return frames

    # -------------------------------------------------------------------------------------- invoke

    def _invoke_frames(self, model: str, answer: tuple[str, str | None]) -> list[bytes]:
        frames = []
        for sse in self._messages_frames(model, answer):
            data = sse.split(b"data: ", 1)[1].rstrip(b"\n")
            event = orjson.loads(data)
            if event.get("type") == "message_stop":
                event["amazon-bedrock-invocationMetrics"] = {
                    "inputTokenCount": self.input_tokens,
                    "outputTokenCount": 3,
                    "invocationLatency": 42,
                    "firstByteLatency": 21,
                }
            chunk = {"bytes": base64.b64encode(orjson.dumps(event)).decode()}
            frames.append(event_frame("chunk", chunk))
        return frames

    async def _event_stream(self, request: web.Request, frames: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, "x-amzn-RequestId": "stand-in"})
        await response.prepare(request)
        data = b"".join(frames)
        # Cut at offsets that fall inside preludes, headers and payloads alike.
        cuts = sorted({0, len(data), *range(7, len(data), 53)})
        for start, end in itertools.pairwise(cuts):
            await response.write(data[start:end])
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await response.write_eof()
        return response
