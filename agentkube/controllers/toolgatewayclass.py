"""The ToolGatewayClass controller: tells a class of ours that agentkube took it on.

A ToolGatewayClass becomes nothing; it selects which ToolGateways agentkube implements (see
``gatewayapi.decide_class``). Only classes whose ``spec.controller`` is the operator's
(``OperatorOptions.tool_gateway_controller``) are touched; another controller's classes are theirs.

Conditions of a class of ours:

- ``Accepted``: True, reason ``Accepted``: agentkube implements ToolGateways of this class.
- ``Default``: whether ToolGateways without ``toolGatewayClassName`` use this class. False, reason
  ``NotDefault``, without the annotation ``toolgatewayclass.kubernetes.io/is-default-class: "true"``;
  True, reason ``DefaultClass``, when it is the only class so annotated. When several classes (of any
  controller) are annotated default, reason ``MultipleDefaultClasses`` on each of ours, naming them
  all: True on the oldest (the one used), False on the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentkube.api.toolgateway import DEFAULT_CLASS_ANNOTATION
from agentkube.controllers import field_manager
from agentkube.controllers.gatewayapi import default_classes
from agentkube.controllers.handover import HandingOver
from agentkube.controllers.kinds import TOOL_GATEWAY_CLASS
from agentkube.controllers.status import StatusWriter
from agentkube.runtime.reconcile import Request, Result

if TYPE_CHECKING:
    from agentkube.controllers import OperatorOptions
    from agentkube.runtime.manager import Manager

__all__ = ["CONDITION_TYPES", "ToolGatewayClassReconciler", "class_conditions", "setup"]

CONDITION_TYPES = ("Accepted", "Default")


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def class_conditions(
    obj: Mapping[str, Any], classes: Sequence[Mapping[str, Any]], controller: str
) -> list[dict[str, Any]]:
    """The conditions of ``obj``, a class of ours, given every ToolGatewayClass."""
    generation = int(obj["metadata"].get("generation") or 0)
    conditions: list[dict[str, Any]] = [
        {
            "type": "Accepted",
            "status": "True",
            "observedGeneration": generation,
            "reason": "Accepted",
            "message": f"ToolGateways of this class are implemented by {controller}.",
        }
    ]
    defaults = default_classes(classes)
    names = [_name(c) for c in defaults]
    default: dict[str, Any] = {"type": "Default", "observedGeneration": generation}
    if _name(obj) not in names:
        default |= {
            "status": "False",
            "reason": "NotDefault",
            "message": f'Not annotated {DEFAULT_CLASS_ANNOTATION}: "true".',
        }
    elif len(names) == 1:
        default |= {
            "status": "True",
            "reason": "DefaultClass",
            "message": "ToolGateways without toolGatewayClassName use this class.",
        }
    else:
        several = f"{len(names)} ToolGatewayClasses are annotated default ({', '.join(names)}); "
        if names[0] == _name(obj):
            default |= {
                "status": "True",
                "reason": "MultipleDefaultClasses",
                "message": several + "ToolGateways without toolGatewayClassName use the oldest, this one. "
                "Remove the annotation from the others.",
            }
        else:
            default |= {
                "status": "False",
                "reason": "MultipleDefaultClasses",
                "message": several + f"ToolGateways without toolGatewayClassName use the oldest, {names[0]}, "
                "not this one. Remove the annotation from all but one.",
            }
    conditions.append(default)
    return conditions


class ToolGatewayClassReconciler:
    """Writes the conditions of our ToolGatewayClasses; reads only the cache."""

    def __init__(self, manager: Manager, options: OperatorOptions) -> None:
        self._cache = manager.cache
        self._controller = options.tool_gateway_controller
        self.status = StatusWriter(
            HandingOver(manager.client),
            fields=("observedGeneration", "conditions"),
            condition_types=CONDITION_TYPES,
            field_manager=field_manager("toolgatewayclass"),
        )

    async def reconcile(self, request: Request) -> Result | None:
        obj = self._cache.get(TOOL_GATEWAY_CLASS, request.name)
        if obj is None:
            self.status.forget(TOOL_GATEWAY_CLASS, request.key)
            return None
        if (obj.get("spec") or {}).get("controller") != self._controller:
            return None
        conditions = class_conditions(obj, self._cache.list(TOOL_GATEWAY_CLASS), self._controller)
        status = {
            "observedGeneration": int(obj["metadata"].get("generation") or 0),
            "conditions": conditions,
        }
        await self.status.apply(obj, status)
        return None


def setup(manager: Manager, options: OperatorOptions) -> None:
    """Register the ToolGatewayClass controller."""
    cache = manager.cache

    def every_class(_: dict[str, Any]) -> list[Request]:
        # Which class is the default depends on all of them: one changing can change another's status.
        return [Request(None, _name(c)) for c in cache.list(TOOL_GATEWAY_CLASS)]

    (
        manager.controller("toolgatewayclass")
        .for_kind(TOOL_GATEWAY_CLASS)
        .watches(TOOL_GATEWAY_CLASS, map_to=every_class)
        .complete(ToolGatewayClassReconciler(manager, options))
    )
