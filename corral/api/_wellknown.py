"""Names the operator, the node agent and the SDK agree on: labels, annotations, finalizers.

The operator and the node agent never import each other, so every name both of them
(or a client) read or write lives here, next to the resource models.
"""

SYSTEM_NAMESPACE = "corral-system"
"""Where the operator runs and node agents keep their Leases."""

NODE_LABEL = "corral.dev/node"
"""On a Sandbox: the node it is placed on (set once by the operator, selected on by the
node agent's watch)."""
AGENT_LABEL = "corral.dev/node-agent"
"""Marks a Lease as a node agent's registration and heartbeat."""

CPUS_ANNOTATION = "corral.dev/cpus"
"""On a node Lease: vCPUs the node offers to sandboxes, a decimal integer."""
MEMORY_ANNOTATION = "corral.dev/memory-mib"
"""On a node Lease: memory in MiB the node offers to sandboxes, a decimal integer."""
ACCELERATOR_ANNOTATION = "corral.dev/accelerator"
"""On a node Lease: how the node virtualizes, `kvm` or `tcg`."""
VERSION_ANNOTATION = "corral.dev/version"
"""On a node Lease: the node agent's version."""
ENDPOINT_ANNOTATION = "corral.dev/endpoint"
"""On a node Lease: the node agent's HTTPS API (`https://host:port`) for exec and files."""
CA_ANNOTATION = "corral.dev/ca"
"""On a node Lease: the PEM certificate the node agent's API serves with. Clients trust it
because they read it through the (authenticated, TLS-verified) Kubernetes API."""

NODE_AGENT_FINALIZER = "corral.dev/node-agent"
"""On a placed Sandbox: its node agent has yet to stop and remove the VM. The operator adds
it with the placement, the node agent removes it once the VM is gone."""
