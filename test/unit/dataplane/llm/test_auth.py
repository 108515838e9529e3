"""Client API keys: how a request presents one, and who it is."""

from __future__ import annotations

import pytest

from agentkube.dataplane.llm.auth import ANONYMOUS, ClientKeyError, Clients, Unauthorized, presented_key
from agentkube.dataplane.llm.config import ClientAuth

AUTH = ClientAuth.model_validate(
    {"mode": "apikey", "clients": [{"id": "team-a", "keyEnv": "KA"}, {"id": "team-b", "keyEnv": "KB"}]}
)
ENV = {"KA": "key-of-a", "KB": "a-much-longer-key-of-team-b"}


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"Authorization": "Bearer key-of-a"}, "key-of-a"),
        ({"Authorization": "bearer  key-of-a "}, "key-of-a"),
        ({"x-api-key": "key-of-a"}, "key-of-a"),
        ({"Authorization": "Bearer key-of-a", "x-api-key": "other"}, "key-of-a"),
        ({"Authorization": "Basic a2V5"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"x-api-key": "  "}, None),
        ({}, None),
    ],
)
def test_the_key_comes_from_bearer_or_x_api_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(headers) == key


def test_each_key_names_its_client() -> None:
    clients = Clients(AUTH, ENV)
    assert clients.ids == ["team-a", "team-b"]
    assert clients.identify({"x-api-key": "key-of-a"}) == "team-a"
    assert clients.identify({"Authorization": "Bearer a-much-longer-key-of-team-b"}) == "team-b"


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "key-of-"}, {"x-api-key": "key-of-a-and-more"}])
def test_a_missing_or_unknown_key_is_unauthorized_without_echoing_it(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized) as e:
        Clients(AUTH, ENV).identify(headers)
    assert "key-of" not in str(e.value)


def test_without_auth_everyone_is_anonymous_whatever_they_send() -> None:
    clients = Clients(ClientAuth(), {})
    assert clients.identify({"x-api-key": "anything"}) == ANONYMOUS
    assert clients.identify({}) == ANONYMOUS


def test_a_client_whose_variable_is_unset_stops_the_start_naming_it() -> None:
    with pytest.raises(ClientKeyError) as e:
        Clients(AUTH, {"KA": "key-of-a", "KB": ""})
    assert str(e.value).startswith("auth.clients[team-b].keyEnv: KB is not set")
