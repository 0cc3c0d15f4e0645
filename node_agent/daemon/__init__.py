"""The node agent daemon (`corral-node-agent`): runs this node's Sandbox resources as VMs.

It registers the node with a Lease, watches only the Sandboxes placed here, boots and
stops their VMs through the runtime (the same supervisors the embedded SDK uses), writes
their status, and serves exec and file access over HTTPS plus Prometheus metrics.
"""
