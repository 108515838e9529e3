from __future__ import annotations

from typing import Any

import pytest

from agentkube.runtime.gvk import GVK
from agentkube.runtime.handler import (
    EnqueueRequestForObject,
    EnqueueRequestForOwner,
    EnqueueRequestsFromMapFunc,
)
from agentkube.runtime.informer import Event, EventType
from agentkube.runtime.predicate import (
    AnnotationsChanged,
    GenerationChanged,
    LabelsChanged,
    ResourceVersionChanged,
    and_,
    not_,
    or_,
)
from agentkube.runtime.reconcile import Request


def obj(
    name: str = "a",
    namespace: str | None = "ns",
    *,
    generation: int | None = 1,
    rv: str = "1",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if namespace:
        meta["namespace"] = namespace
    if generation is not None:
        meta["generation"] = generation
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    if owners is not None:
        meta["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "Thing", "metadata": meta}


def modified(old: dict[str, Any], new: dict[str, Any]) -> Event:
    return Event(EventType.MODIFIED, new, old)


# -- predicates ----------------------------------------------------------------------------------


def test_generation_changed_passes_spec_changes_only() -> None:
    p = GenerationChanged()
    assert p(modified(obj(generation=1, rv="1"), obj(generation=2, rv="2")))
    assert not p(modified(obj(generation=1, rv="1"), obj(generation=1, rv="2")))


def test_generation_changed_filters_every_update_of_kinds_without_generation() -> None:
    # controller-runtime's behaviour: both generations are "0", so no update passes.
    p = GenerationChanged()
    assert not p(modified(obj(generation=None, rv="1"), obj(generation=None, rv="2")))


@pytest.mark.parametrize(
    "predicate",
    [GenerationChanged(), LabelsChanged(), AnnotationsChanged(), ResourceVersionChanged()],
    ids=repr,
)
@pytest.mark.parametrize("event_type", [EventType.ADDED, EventType.DELETED, EventType.RESYNC])
def test_change_predicates_pass_adds_deletes_and_resyncs(predicate: Any, event_type: EventType) -> None:
    same = obj()
    assert predicate(Event(event_type, same, same))


def test_an_update_without_old_object_passes() -> None:
    assert GenerationChanged()(Event(EventType.MODIFIED, obj()))


def test_labels_changed() -> None:
    p = LabelsChanged()
    assert p(modified(obj(labels={"a": "1"}), obj(labels={"a": "2"})))
    assert p(modified(obj(), obj(labels={"a": "1"})))
    assert not p(modified(obj(labels={"a": "1"}, rv="1"), obj(labels={"a": "1"}, rv="2")))
    assert not p(modified(obj(labels=None), obj(labels={})))  # absent and empty are the same


def test_annotations_changed() -> None:
    p = AnnotationsChanged()
    assert p(modified(obj(annotations={"x": "1"}), obj(annotations={})))
    assert not p(
        modified(obj(annotations={"x": "1"}, generation=1), obj(annotations={"x": "1"}, generation=2))
    )


def test_resource_version_changed() -> None:
    p = ResourceVersionChanged()
    assert p(modified(obj(rv="1"), obj(rv="2")))
    assert not p(modified(obj(rv="5"), obj(rv="5")))


def test_combinators() -> None:
    spec = modified(obj(generation=1, labels={}), obj(generation=2, labels={}))
    label = modified(obj(generation=1, labels={}), obj(generation=1, labels={"a": "b"}))
    neither = modified(obj(generation=1, rv="1"), obj(generation=1, rv="2"))
    either = or_(GenerationChanged(), LabelsChanged())
    assert either(spec) and either(label) and not either(neither)
    both = and_(GenerationChanged(), LabelsChanged())
    assert not both(spec) and not both(label)
    assert not_(GenerationChanged())(neither) and not not_(GenerationChanged())(spec)
    assert and_()(neither) and not or_()(neither)
    assert repr(either) == "or_(GenerationChanged(), LabelsChanged())"


def test_plain_functions_are_predicates() -> None:
    not_resync = and_(lambda e: e.type is not EventType.RESYNC)
    assert not not_resync(Event(EventType.RESYNC, obj(), obj()))


# -- handlers ------------------------------------------------------------------------------------

OWNER = GVK("example.com", "v1", "Widget")


def ref(
    kind: str = "Widget", api_version: str = "example.com/v1", name: str = "w", controller: bool = True
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": "u-" + name,
        "controller": controller,
    }


def test_enqueue_for_object_names_the_object() -> None:
    assert EnqueueRequestForObject()(Event(EventType.ADDED, obj("x", "ns"))) == [Request("ns", "x")]
    assert EnqueueRequestForObject()(Event(EventType.ADDED, obj("x", None))) == [Request(None, "x")]


def test_enqueue_for_owner_follows_the_controller_reference_of_the_owner_kind() -> None:
    handler = EnqueueRequestForOwner(OWNER)
    child = obj(
        "c",
        owners=[
            ref(name="not-controller", controller=False),
            ref(kind="Gadget", name="other-kind"),
            ref(api_version="other.com/v1", name="other-group"),
            ref(name="w"),
        ],
    )
    assert handler(Event(EventType.ADDED, child)) == [Request("ns", "w")]


def test_enqueue_for_owner_ignores_the_reference_version() -> None:
    child = obj("c", owners=[ref(api_version="example.com/v1beta1")])
    assert EnqueueRequestForOwner(OWNER)(Event(EventType.ADDED, child)) == [Request("ns", "w")]


def test_enqueue_for_owner_can_take_every_reference_of_the_kind() -> None:
    child = obj("c", owners=[ref(name="a", controller=False), ref(name="b")])
    handler = EnqueueRequestForOwner(OWNER, controller_only=False)
    assert handler(Event(EventType.ADDED, child)) == [Request("ns", "a"), Request("ns", "b")]


def test_enqueue_for_cluster_scoped_owner_has_no_namespace() -> None:
    child = obj("c", owners=[ref()])
    handler = EnqueueRequestForOwner(OWNER, owner_namespaced=False)
    assert handler(Event(EventType.ADDED, child)) == [Request(None, "w")]


def test_enqueue_for_owner_wakes_old_and_new_owner_on_update() -> None:
    old = obj("c", owners=[ref(name="before")])
    new = obj("c", owners=[ref(name="after")])
    got = EnqueueRequestForOwner(OWNER)(modified(old, new))
    assert got == [Request("ns", "after"), Request("ns", "before")]


def test_enqueue_for_owner_without_references_is_empty() -> None:
    assert EnqueueRequestForOwner(OWNER)(Event(EventType.DELETED, obj())) == []


def test_map_func_maps_old_and_new_and_dedupes() -> None:
    def map_to(o: dict[str, Any]) -> list[Request]:
        return [Request("ns", "always"), Request("ns", "from-" + o["metadata"]["resourceVersion"])]

    got = EnqueueRequestsFromMapFunc(map_to)(modified(obj(rv="1"), obj(rv="2")))
    assert got == [Request("ns", "always"), Request("ns", "from-2"), Request("ns", "from-1")]
