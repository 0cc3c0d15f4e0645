"""Tests of the Kubernetes-API-compatible test server."""
