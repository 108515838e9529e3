"""A Google Vertex AI stand-in on loopback: its OAuth token endpoint, a GCE metadata server, and the
Claude and Gemini endpoints of one project, for the LLM gateway's end-to-end tests.

``VertexStandIn(project=..., location=...)`` runs like the other stand-ins (``llm_standins.StandIn``:
a thread of its own, ``requests``, ``invalid``, ``fail``, ``break_stream``) on one port, which serves:

- ``POST /token``: Google's OAuth token endpoint for service-account keys. ``service_account()``
  makes a key (a fresh RSA key from ``cryptography``) whose ``token_uri`` points here; the endpoint
  takes google-auth's JWT-bearer grant only when the assertion's RS256 signature verifies with that
  key's public half and its claims are right (``iss`` the key's email, ``aud`` Google's token
  endpoint, as the real one requires whatever URL it is reached at,
  ``scope`` holding cloud-platform, ``iat``/``exp`` around now), and issues an opaque token that
  lives ``token_seconds``.
- A GCE metadata server as google-auth's application default credentials use it (point
  ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP`` here): the ping at ``/``, ``project/project-id``,
  the default service account's info and its token (scopes checked), each only with
  ``Metadata-Flavor: Google``, as the real one.
- ``/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict`` and
  ``:streamRawPredict`` (and ``count-tokens:rawPredict``): the body must be a Messages request without
  ``model`` (the SDK's ``MessageCreateParams`` with the URL's model put back) with
  ``anthropic_version: vertex-2023-10-16``; answered as the Anthropic stand-in answers.
- ``.../publishers/google/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``: the
  body is checked for the fields and shapes generateContent takes (roles user/model, one data field
  per part, function responses matching the calls of the turn before, each call of the stand-in's
  sent back with the thought signature it carried); answered in the recorded shape: text, or a
  ``functionCall`` of the first declared function with ``{"city": "Paris"}`` and a thought
  signature, the function's response echoed back in the next turn, ``usageMetadata``.

Every Vertex request needs ``Authorization: Bearer`` with a token this stand-in issued and that has
not expired (else Google's 401 ``UNAUTHENTICATED``); ``tokens_used`` records which token each request
carried and how long it had left. Errors are Google's envelope (``{"error": {"code", "message",
"status"}}``) except what ``fail(..., body=...)`` sets.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from test.e2e.llm_standins import TOOL_ARGUMENTS, StandIn, received, validate

__all__ = ["SIGNATURE", "VertexStandIn"]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
VERSION = "vertex-2023-10-16"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
"""The audience Google's token endpoint requires of a grant, wherever the key's token_uri points."""
SIGNATURE = base64.b64encode(b"\xfb\xff\xbe thought of the stand-in \xfe\xff").decode()
"""The thought signature every function call of the stand-in carries (with ``+``, ``/`` and ``=``)."""
_GEMINI_FIELDS = frozenset(
    {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "labels"}
)
_GENERATION_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "maxOutputTokens",
        "stopSequences",
        "presencePenalty",
        "frequencyPenalty",
        "seed",
        "responseMimeType",
        "responseJsonSchema",
        "responseSchema",
        "thinkingConfig",
    }
)
_DATA_FIELDS = frozenset({"text", "inlineData", "fileData", "functionCall", "functionResponse"})
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenUse:
    token: str
    seconds_left: float


class VertexStandIn(StandIn):
    def __init__(
        self,
        *,
        name: str = "vertex",
        project: str = "agentkube-test",
        location: str = "us-east5",
        token_seconds: float = 3600.0,
    ) -> None:
        super().__init__("anthropic", name=name)
        self.project = project
        self.location = location
        self.token_seconds = token_seconds
        self.metadata_email = "gateway@agentkube-test.iam.gserviceaccount.com"
        self.issued: dict[str, tuple[float, str]] = {}
        """Every token issued: its expiry (epoch seconds) and who asked (a key's email, or metadata)."""
        self.tokens_used: list[TokenUse] = []
        self._keys: dict[str, tuple[str, rsa.RSAPublicKey]] = {}  # email -> (key id, public key)
        self._accounts = itertools.count(1)

    # ----------------------------------------------------------------------------- credentials

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    def service_account(self) -> dict[str, Any]:
        """A new service-account key (the JSON Google issues) this stand-in's token endpoint accepts."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = next(self._accounts)
        email = f"gateway-{n}@{self.project}.iam.gserviceaccount.com"
        key_id = secrets.token_hex(20)
        with self._lock:
            self._keys[email] = (key_id, private.public_key())
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(100000000000000000000 + n),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }

    def mint(self, who: str = "test") -> str:
        """A token issued here directly (for an SDK given a static access token)."""
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        with self._lock:
            self.issued[token] = (time.time() + self.token_seconds, who)
        return token

    def metadata_env(self) -> dict[str, str]:
        """The variables that point google-auth's metadata server at this stand-in."""
        address = f"127.0.0.1:{self.port}"
        return {"GCE_METADATA_HOST": address, "GCE_METADATA_IP": address}

    def _verify_assertion(self, assertion: str) -> str:
        """The email of the key that signed ``assertion``; raises ValueError saying what is wrong."""
        try:
            head, claims_part, signature = assertion.split(".")
            header = orjson.loads(_unb64url(head))
            claims = orjson.loads(_unb64url(claims_part))
        except ValueError as e:
            raise ValueError(f"the assertion is not a JWT: {e}") from None
        if header.get("alg") != "RS256":
            raise ValueError(f"alg {header.get('alg')!r}, not RS256")
        email = claims.get("iss")
        with self._lock:
            known = self._keys.get(email)
        if known is None:
            raise ValueError(f"no key for issuer {email!r}")
        key_id, public = known
        if header.get("kid") not in (None, key_id):
            raise ValueError("kid names another key")
        try:
            public.verify(
                _unb64url(signature), f"{head}.{claims_part}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise ValueError("the signature does not verify with the key's public key") from None
        now = time.time()
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            raise ValueError(f"aud {claims.get('aud')!r} is not Google's token endpoint")
        if SCOPE not in str(claims.get("scope", "")).split():
            raise ValueError(f"scope {claims.get('scope')!r} lacks cloud-platform")
        if not (claims.get("iat", 0) <= now + 60 and claims.get("exp", 0) > now):
            raise ValueError("the assertion is not valid now")
        return str(email)

    def _issue(self, who: str) -> web.Response:
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        with self._lock:
            self.issued[token] = (time.time() + self.token_seconds, who)
        lifetime = max(1, round(self.token_seconds))
        return web.json_response({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            email = self._verify_assertion(str(form.get("assertion", "")))
        except ValueError as e:
            with self._lock:
                self.invalid.append(f"/token: {e}")
            return web.json_response({"error": "invalid_grant", "error_description": str(e)}, status=400)
        return self._issue(email)

    def _metadata(self, request: web.Request) -> web.Response:
        flavor = {"Metadata-Flavor": "Google"}
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.", headers=flavor)
        path = request.path.removeprefix("/computeMetadata/v1/")
        if request.path == "/":
            return web.Response(text="computeMetadata/\n", headers=flavor)
        if path == "project/project-id":
            return web.Response(text=self.project, headers=flavor)
        accounts = ("default", self.metadata_email)
        if path.removesuffix("/") in (f"instance/service-accounts/{a}" for a in accounts):
            info = {"aliases": ["default"], "email": self.metadata_email, "scopes": [SCOPE]}
            return web.json_response(info, headers=flavor)
        if path in (f"instance/service-accounts/{a}/token" for a in accounts):
            scopes = request.query.get("scopes", "")
            if SCOPE not in scopes.split(","):
                with self._lock:
                    self.invalid.append(f"metadata token asked without cloud-platform: {scopes!r}")
                return web.Response(status=400, text="scopes", headers=flavor)
            response = self._issue("metadata")
            response.headers.update(flavor)
            return response
        return web.Response(status=404, text="not found", headers=flavor)

    def _bearer(self, request: web.Request) -> str | None:
        """Why the request's token is not accepted, or None."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        with self._lock:
            known = self.issued.get(token)
            if known is None or not header.startswith("Bearer "):
                return "Request had invalid authentication credentials."
            left = known[0] - time.time()
            self.tokens_used.append(TokenUse(token, left))
        return None if left > 0 else "Request had invalid authentication credentials: the token expired."

    # ------------------------------------------------------------------------------------ routing

    def google_error(self, status: int, message: str) -> web.Response:
        body = {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/token":
            return await self._token(request)
        if request.path == "/" or request.path.startswith("/computeMetadata/"):
            return self._metadata(request)
        raw = await request.read()
        got = received(request, raw)
        body = got.body
        with self._lock:
            self.requests.append(got)
        prefix = f"/v1/projects/{self.project}/locations/{self.location}/publishers/"
        if not request.path.startswith(prefix) or request.method != "POST":
            return self.google_error(404, f"stand-in: no such resource {request.path}")
        publisher, _, rest = request.path.removeprefix(prefix).partition("/models/")
        model, _, method = rest.rpartition(":")
        unauthenticated = self._bearer(request)
        if unauthenticated is not None:
            return self.google_error(401, unauthenticated)
        if publisher == "anthropic" and method in ("rawPredict", "streamRawPredict"):
            api = "count_tokens" if model == "count-tokens" else "messages"
            problems = self._claude_problems(api, body, model, stream=method == "streamRawPredict")
        elif publisher == "google" and method in ("generateContent", "streamGenerateContent"):
            api = "gemini"
            problems = self._gemini_problems(body)
            if method == "streamGenerateContent" and request.query.get("alt") != "sse":
                problems.append("streamGenerateContent without alt=sse answers a JSON array, not SSE")
        else:
            return self.google_error(404, f"stand-in: publishers/{publisher}/models/{rest} is not served")
        if problems:
            with self._lock:
                self.invalid.append(f"{request.path}: {'; '.join(problems)}")
            return self.google_error(400, "stand-in: request failed validation: " + "; ".join(problems))
        assert isinstance(body, dict)
        plan = self._next_plan()
        if plan is not None and plan.mode == "fail":
            if plan.body is not None:
                return web.Response(
                    status=plan.status, body=plan.body, content_type="application/json", headers=plan.headers
                )
            response = self.google_error(plan.status, f"stand-in {self.name} failed on purpose")
            response.headers.update(plan.headers)
            return response
        broken = plan is not None and plan.mode == "break"
        if api == "count_tokens":
            return web.json_response({"input_tokens": self.counted(body)})
        if api == "messages":
            answer = self._answer("messages", body)
            if method == "rawPredict":
                return web.json_response(self._whole("messages", model, answer))
            return await self._stream(request, "messages", model, answer, body, broken)
        if method == "generateContent":
            return web.json_response(self._gemini_whole(model, body))
        return await self._gemini_stream(request, model, body, broken)

    # -------------------------------------------------------------------------------------- Claude

    def _claude_problems(self, api: str, body: Any, model: str, *, stream: bool) -> list[str]:
        if not isinstance(body, dict):
            return ["the body is not a JSON object"]
        problems: list[str] = []
        if body.get("anthropic_version") != VERSION:
            problems.append(f"anthropic_version is {body.get('anthropic_version')!r}, not {VERSION!r}")
        as_anthropic = {k: v for k, v in body.items() if k != "anthropic_version"}
        if api == "messages":
            if "model" in body:
                problems.append("model is in the body; Vertex takes it from the URL")
            as_anthropic["model"] = model
            if (body.get("stream") is True) != stream:
                problems.append("stream in the body does not match the method")
        elif not isinstance(body.get("model"), str):
            problems.append("count-tokens needs the model in the body")
        return problems + validate(api, as_anthropic)

    # -------------------------------------------------------------------------------------- Gemini

    def _gemini_problems(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["the body is not a JSON object"]
        problems = [f"unknown field {k!r}" for k in body if k not in _GEMINI_FIELDS]
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return [*problems, "contents: a non-empty list is required"]
        previous_calls: list[str] = []
        for i, content in enumerate(contents):
            where = f"contents[{i}]"
            if not isinstance(content, dict) or content.get("role") not in ("user", "model"):
                problems.append(f"{where}.role: user or model")
                continue
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                problems.append(f"{where}.parts: a non-empty list is required")
                continue
            calls: list[str] = []
            responses: list[str] = []
            for j, part in enumerate(parts):
                at = f"{where}.parts[{j}]"
                data = [k for k in part if k in _DATA_FIELDS] if isinstance(part, dict) else []
                extra = [k for k in part if k not in _DATA_FIELDS | {"thought", "thoughtSignature"}]
                if len(data) != 1 or extra:
                    problems.append(f"{at}: one data field of {sorted(_DATA_FIELDS)}, got {sorted(part)}")
                    continue
                if "functionCall" in part:
                    call = part["functionCall"]
                    if content["role"] != "model" or not isinstance(call.get("args"), dict):
                        problems.append(f"{at}.functionCall: in a model turn, with args an object")
                    calls.append(str(call.get("name")))
                    if part.get("thoughtSignature") != SIGNATURE and len(calls) == 1:
                        problems.append(f"{at}: function call is missing its thought_signature")
                if "functionResponse" in part:
                    response = part["functionResponse"]
                    if not isinstance(response.get("response"), dict) or not response.get("name"):
                        problems.append(f"{at}.functionResponse: name and a response object")
                    responses.append(str(response.get("name")))
                for media in ("inlineData", "fileData"):
                    if media in part and not part[media].get("mimeType"):
                        problems.append(f"{at}.{media}.mimeType is required")
            if responses and responses != previous_calls:
                problems.append(
                    f"{where}: function responses {responses} do not answer the calls {previous_calls}"
                )
            previous_calls = calls
        config = body.get("generationConfig")
        if isinstance(config, dict):
            problems += [f"generationConfig.{k}: unknown" for k in config if k not in _GENERATION_FIELDS]
        for tool in body.get("tools") or []:
            for declaration in tool.get("functionDeclarations") or []:
                if not declaration.get("name") or (
                    "parameters" in declaration and "parametersJsonSchema" in declaration
                ):
                    problems.append("tools: a declaration needs a name and one parameters form")
        return problems

    def _gemini_answer(self, body: dict[str, Any]) -> tuple[str, str | None]:
        last = body["contents"][-1]
        results = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
        if results:
            output = results[-1]["response"].get("output")
            return f"{self.name} got the tool result: {output}", None
        declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
        if declarations:
            return "", str(declarations[0]["name"])
        return f"{self.name} says hello", None

    def _gemini_usage(self, output: int, *, final: bool = True) -> dict[str, Any]:
        usage: dict[str, Any] = {"promptTokenCount": self.input_tokens, "trafficType": "ON_DEMAND"}
        if final:
            usage |= {
                "candidatesTokenCount": output,
                "totalTokenCount": self.input_tokens + output,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.input_tokens}],
                "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": output}],
            }
        return usage

    def _gemini_chunk(
        self, model: str, response_id: str, parts: list[dict[str, Any]], **extra: Any
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
        candidate.update({k: v for k, v in extra.items() if k in ("finishReason", "avgLogprobs")})
        chunk: dict[str, Any] = {"candidates": [candidate]}
        if "usageMetadata" in extra:
            chunk["usageMetadata"] = extra["usageMetadata"]
        chunk |= {
            "modelVersion": model,
            "createTime": "2026-12-01T12:00:00.000000Z",
            "responseId": response_id,
        }
        return chunk

    def _gemini_whole(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        text, tool = self._gemini_answer(body)
        parts: list[dict[str, Any]] = (
            [{"functionCall": {"name": tool, "args": TOOL_ARGUMENTS}, "thoughtSignature": SIGNATURE}]
            if tool
            else [{"text": text}]
        )
        output = max(1, len(text.split())) if text else 5
        return self._gemini_chunk(
            model,
            self._id("resp"),
            parts,
            finishReason="STOP",
            avgLogprobs=-0.25,
            usageMetadata=self._gemini_usage(output),
        )

    async def _gemini_stream(
        self, request: web.Request, model: str, body: dict[str, Any], broken: bool
    ) -> web.StreamResponse:
        text, tool = self._gemini_answer(body)
        response_id = self._id("resp")
        chunks: list[dict[str, Any]] = []
        if tool:
            part = {"functionCall": {"name": tool, "args": TOOL_ARGUMENTS}, "thoughtSignature": SIGNATURE}
            chunks.append(
                self._gemini_chunk(
                    model, response_id, [part], usageMetadata=self._gemini_usage(0, final=False)
                )
            )
            chunks.append(
                self._gemini_chunk(
                    model,
                    response_id,
                    [{"text": ""}],
                    finishReason="STOP",
                    usageMetadata=self._gemini_usage(5),
                )
            )
        else:
            words = text.split(" ")
            pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                extra: dict[str, Any] = (
                    {"finishReason": "STOP", "usageMetadata": self._gemini_usage(len(words))}
                    if last
                    else {"usageMetadata": self._gemini_usage(0, final=False)}
                )
                chunks.append(self._gemini_chunk(model, response_id, [{"text": piece}], **extra))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for i, chunk in enumerate(chunks):
            if broken and i == 1:
                await asyncio.sleep(0.2)
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n")
        await response.write_eof()
        return response
