"""Corral's Kubernetes API (`corral.dev/v1alpha1`): the Sandbox, Volume and NetworkPolicy
resources as pydantic models, shared by the operator, the node agent and the SDK.

The models are the single source of the CRDs (`corral.api.crd`). Python uses snake_case,
the wire camelCase: `Sandbox.model_validate(obj)` reads an object from the API server,
`model_dump(mode="json", by_alias=True, exclude_none=True)` writes one. No I/O here.
"""

from corral.api._conditions import Event, find_condition, set_condition
from corral.api._meta import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ObjectMeta,
    PrinterColumn,
    Resource,
)
from corral.api._network import EgressRule, NetworkPolicy, NetworkPolicySpec, NetworkPolicyStatus
from corral.api._sandbox import (
    EnvVar,
    LocalObjectReference,
    Resources,
    Sandbox,
    SandboxSpec,
    SandboxStatus,
    VolumeMount,
)
from corral.api._volume import Volume, VolumeSpec, VolumeStatus
from corral.api._wellknown import (
    ACCELERATOR_ANNOTATION,
    AGENT_LABEL,
    CA_ANNOTATION,
    CPUS_ANNOTATION,
    ENDPOINT_ANNOTATION,
    MEMORY_ANNOTATION,
    NODE_AGENT_FINALIZER,
    NODE_LABEL,
    SYSTEM_NAMESPACE,
    VERSION_ANNOTATION,
)

__all__ = [
    "ACCELERATOR_ANNOTATION",
    "AGENT_LABEL",
    "API_VERSION",
    "CA_ANNOTATION",
    "CPUS_ANNOTATION",
    "ENDPOINT_ANNOTATION",
    "GROUP",
    "MEMORY_ANNOTATION",
    "NODE_AGENT_FINALIZER",
    "NODE_LABEL",
    "SYSTEM_NAMESPACE",
    "VERSION",
    "VERSION_ANNOTATION",
    "Condition",
    "EgressRule",
    "EnvVar",
    "Event",
    "LocalObjectReference",
    "NetworkPolicy",
    "NetworkPolicySpec",
    "NetworkPolicyStatus",
    "ObjectMeta",
    "PrinterColumn",
    "Resource",
    "Resources",
    "Sandbox",
    "SandboxSpec",
    "SandboxStatus",
    "Volume",
    "VolumeMount",
    "VolumeSpec",
    "VolumeStatus",
    "find_condition",
    "set_condition",
]
