"""ClusterRole aggregation, the controller kube-controller-manager runs, on the server's loop.

A ClusterRole with an `aggregationRule` gets as its rules those of every other
ClusterRole one of its `clusterRoleSelectors` matches (selector by selector, roles
in name order, each rule once), so a component's role labelled
`rbac.authorization.k8s.io/aggregate-to-edit: "true"` adds to `edit`. Like the real
controller it runs just after the write that triggered it; an aggregated role
that changes is itself a ClusterRole write, so nesting (view into edit into
admin) converges. `objects.py` calls `changed()` after every ClusterRole write.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .selectors import from_label_selector

if TYPE_CHECKING:
    from .objects import Objects
    from .resources import Resource

JSON = dict[str, Any]
CLUSTER_ROLES = ("rbac.authorization.k8s.io", "clusterroles")
_MANAGER = "clusterrole-aggregation-controller"


def aggregate(role: JSON, roles: list[JSON]) -> list[JSON]:
    """The rules `role`'s aggregationRule collects from `roles` (sorted by name)."""
    rules: list[JSON] = []
    name = role["metadata"]["name"]
    for selector in role["aggregationRule"].get("clusterRoleSelectors") or []:
        requirements = from_label_selector(selector)
        for other in roles:
            labels = other["metadata"].get("labels") or {}
            if other["metadata"]["name"] == name:
                continue
            if not all(r.matches(labels) for r in requirements):
                continue
            rules += [r for r in other.get("rules") or [] if r not in rules]
    return rules


class Aggregator:
    """Keeps every aggregated ClusterRole's rules in step with the roles it selects."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def changed(self, resource: Resource) -> None:
        if resource.key == CLUSTER_ROLES:
            self.objects.schedule(self._sync)

    def _sync(self) -> None:
        resource = self.objects.registry.get(*CLUSTER_ROLES)
        assert resource is not None
        roles = self.objects.store.items(CLUSTER_ROLES)
        for role in roles:
            if not role.get("aggregationRule"):
                continue
            rules = aggregate(role, roles)
            if rules != (role.get("rules") or []):
                updated = copy.deepcopy(role)
                updated["rules"] = rules
                self.objects.internal_update(resource, updated, _MANAGER)
