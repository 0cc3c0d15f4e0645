"""The NetworkPolicy resource: the egress a sandbox is allowed, by mode and rules.

A mode sets the default (public internet only, everything, or nothing) and rules
are exceptions to it, matched by CIDR, exact domain or domain suffix, narrowed by
port and protocol. Domains are enforced by the node's DNS filter, addresses by
nftables. Behaviour comes with the network-policy issue; the schema is fixed now.
Not to be confused with `networking.k8s.io` NetworkPolicy: use `cnetpol`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from corral.api._meta import (
    ApiModel,
    Condition,
    PrinterColumn,
    Resource,
    Rule,
    conditions_field,
    validations,
)

_IPV4_CIDR = r"([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])"
_IPV6_CIDR = r"[0-9a-fA-F:]*:[0-9a-fA-F:.]*/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])"
CIDR_PATTERN = f"^({_IPV4_CIDR}|{_IPV6_CIDR})$"
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DOMAIN_PATTERN = rf"^({_LABEL}\.)*{_LABEL}$"

Port = Annotated[int, Field(ge=1, le=65535)]

_ONE_MATCH = Rule(
    "(has(self.cidr) ? 1 : 0) + (has(self.domain) ? 1 : 0) + (has(self.domainSuffix) ? 1 : 0) == 1",
    "exactly one of cidr, domain and domainSuffix must be set",
)


class EgressRule(ApiModel):
    """An exception to the policy's mode: traffic it matches is allowed or denied."""

    model_config = ConfigDict(json_schema_extra=validations(_ONE_MATCH))

    action: Literal["Allow", "Deny"]
    """What happens to matching traffic."""
    cidr: str | None = Field(default=None, max_length=49, pattern=CIDR_PATTERN)
    """Destination addresses, IPv4 or IPv6 (`10.0.0.0/8`, `2001:db8::/32`)."""
    domain: str | None = Field(default=None, max_length=253, pattern=DOMAIN_PATTERN)
    """Exactly this domain name (`api.example.com`), lower case."""
    domain_suffix: str | None = Field(default=None, max_length=253, pattern=DOMAIN_PATTERN)
    """This domain and every name under it (`example.com` matches `a.example.com`)."""
    protocol: Literal["TCP", "UDP"] | None = None
    """Only this protocol; both when unset."""
    ports: list[Port] = Field(
        default_factory=list, max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Only these destination ports; every port when empty."""


class NetworkPolicySpec(ApiModel):
    """The desired egress policy."""

    mode: Literal["PublicOnly", "AllowAll", "Airgapped"] = "PublicOnly"
    """The default for traffic no rule matches: PublicOnly allows the internet but not
    private, link-local or cluster addresses; AllowAll allows everything; Airgapped allows
    nothing, and the node's DNS filter answers only the names that rules allow."""
    egress: list[EgressRule] = Field(default_factory=list, max_length=256)
    """Exceptions to the mode, first match wins."""


class NetworkPolicyStatus(ApiModel):
    """What the operator observed about the policy."""

    conditions: list[Condition] = conditions_field()
    """Observations by Kubernetes conventions."""


class NetworkPolicy(Resource):
    """The egress allowed to the sandboxes that name it."""

    plural: ClassVar[str] = "networkpolicies"
    short_names: ClassVar[tuple[str, ...]] = ("cnetpol",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Mode", "string", ".spec.mode", "The default for unmatched traffic."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
    )

    kind: Literal["NetworkPolicy"] = "NetworkPolicy"
    spec: NetworkPolicySpec = NetworkPolicySpec()
    status: NetworkPolicyStatus = NetworkPolicyStatus()
