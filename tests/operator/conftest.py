"""The test server's fixtures and the Corral CRDs, shared with tests/api."""

from api.conftest import crds, kubeapi, kubeapi_settings, kubeconfig, kubectl

__all__ = ["crds", "kubeapi", "kubeapi_settings", "kubeconfig", "kubectl"]
