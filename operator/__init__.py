"""Corral's Kubernetes operator (`corral-operator`): places Sandboxes on nodes.

`main` runs kopf; `sandboxes` is the Sandbox handler, which reads node records from the
node agents' Leases (`nodes`) and asks the pure planner (`placement`) where a sandbox
goes; `conditions` keeps status conditions by Kubernetes conventions; `settings` is what
`main` hands the handlers. It never imports the node agent: the two meet only through
the API server.
"""
