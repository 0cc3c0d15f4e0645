"""The test server's fixtures, shared from tests/api (which shares tests/testing/kubeapi's)."""

from api.conftest import kubeapi, kubeapi_settings, kubeconfig, kubectl

__all__ = ["kubeapi", "kubeapi_settings", "kubeconfig", "kubectl"]
