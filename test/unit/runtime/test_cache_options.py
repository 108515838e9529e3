"""Per-kind cache options: whoever declares a kind gets it cached the way the cache says for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest

from agentkube.runtime.cache import Cache, KindOptions
from agentkube.runtime.gvk import GVK

if TYPE_CHECKING:
    from agentkube.runtime.client import Client

SECRET = GVK("", "v1", "Secret")
CM = GVK("", "v1", "ConfigMap")


def redact(obj: dict[str, Any]) -> dict[str, Any]:
    obj.pop("data", None)
    return obj


def cache(**kwargs: Any) -> Cache:
    # Creating informers does no I/O; nothing here starts them.
    return Cache(cast("Client", None), **kwargs)


def test_a_kinds_selectors_namespace_and_transform_apply_to_every_informer_of_it() -> None:
    c = cache(by_kind={SECRET: KindOptions(label_selector="app=ours", namespace="ops", transform=redact)})
    informer = c.informer(SECRET)
    assert informer.label_selector == "app=ours"
    assert informer.namespace == "ops"
    assert informer.reflector._transform is redact
    # Other kinds keep the cache's defaults.
    other = c.informer(CM)
    assert other.label_selector is None and other.namespace is None


def test_a_callers_selector_narrows_the_kinds_never_widens_it() -> None:
    c = cache(by_kind={SECRET: KindOptions(label_selector="app=ours", field_selector="type=Opaque")})
    informer = c.informer(SECRET, label_selector="tier=db", field_selector="metadata.name=x")
    assert informer.label_selector == "app=ours,tier=db"
    assert informer.field_selector == "type=Opaque,metadata.name=x"
    assert c.informer(SECRET, label_selector="app=ours") is c.informer(SECRET), "same scope, same informer"


def test_a_kind_cached_metadata_only_is_metadata_only_for_everyone() -> None:
    c = cache(by_kind={SECRET: KindOptions(metadata_only=True)})
    assert c.informer(SECRET).metadata_only
    assert c.informer(SECRET, metadata_only=False).metadata_only


def test_a_namespace_given_by_the_caller_must_be_inside_the_kinds() -> None:
    c = cache(by_kind={SECRET: KindOptions(namespace="ops")})
    assert c.informer(SECRET, namespace="ops").namespace == "ops"
    with pytest.raises(ValueError, match="ops"):
        c.informer(SECRET, namespace="other")


def test_a_callers_transform_other_than_the_kinds_is_refused() -> None:
    c = cache(by_kind={SECRET: KindOptions(transform=redact)})
    assert c.informer(SECRET, transform=redact).reflector._transform is redact
    with pytest.raises(ValueError, match="redact"):
        c.informer(SECRET, transform=lambda o: o)


def test_kind_options_check_their_selectors() -> None:
    with pytest.raises(ValueError, match="label_selector"):
        KindOptions(label_selector="app in (")


def test_a_kind_in_several_namespaces_is_one_source_over_an_informer_each() -> None:
    from agentkube.runtime.cache import NamespacedInformers

    c = cache(by_kind={SECRET: KindOptions(namespaces=("a", "b"), label_selector="app=ours")})
    source = c.source(SECRET)
    assert isinstance(source, NamespacedInformers)
    assert source.namespaces == ("a", "b")
    assert [m.label_selector for m in source.members] == ["app=ours", "app=ours"]
    assert c.source(SECRET) is source
    assert c.source(SECRET, namespace="a") is c.informer(SECRET, namespace="a") is source.members[0]
    with pytest.raises(ValueError, match=r"cache\.source"):
        c.informer(SECRET)
    with pytest.raises(ValueError, match="'c'"):
        c.informer(SECRET, namespace="c")
    with pytest.raises(ValueError, match="not both"):
        KindOptions(namespace="a", namespaces=("b",))
