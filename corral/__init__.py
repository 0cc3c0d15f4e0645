"""Corral: run AI agents and untrusted code in microVM sandboxes.

This module is the public SDK surface; everything else is private. Names are loaded on
first use, so the runtime (a supervisor per sandbox) can import its own modules without
paying for the SDK and pydantic on the boot path.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral._cluster import ClusterClient, ClusterSandbox
    from corral._config import DEFAULT_IMAGE, SandboxConfig
    from corral._errors import (
        BootError,
        ChannelError,
        CorralError,
        ExecError,
        ExecFailed,
        ExecTimeout,
        Forbidden,
        FsError,
        ImageError,
        InvalidConfig,
        SandboxAlreadyExists,
        SandboxNotFound,
        SandboxNotRunning,
        SandboxTimeout,
        Unauthorized,
    )
    from corral._exec import (
        ExecEvent,
        ExecOutput,
        ExecStream,
        Exited,
        Failed,
        Started,
        Stderr,
        Stdout,
    )
    from corral._fs import FileInfo, FsGateway
    from corral._images import (
        Image,
        ImageLayer,
        PullProgress,
        RegistryAuth,
        load,
        pull,
        registry_auths_from_docker_config,
    )
    from corral._sandbox import Sandbox, SandboxBuilder, SandboxHandle, remove
    from corral._state import SandboxRecord
    from corral._sync import SyncExecStream, SyncFsGateway, SyncSandbox, SyncSandboxBuilder

_EXPORTS = {
    "DEFAULT_IMAGE": "corral._config",
    "BootError": "corral._errors",
    "ChannelError": "corral._errors",
    "ClusterClient": "corral._cluster",
    "ClusterSandbox": "corral._cluster",
    "CorralError": "corral._errors",
    "ExecError": "corral._errors",
    "ExecEvent": "corral._exec",
    "ExecFailed": "corral._errors",
    "ExecOutput": "corral._exec",
    "ExecStream": "corral._exec",
    "ExecTimeout": "corral._errors",
    "Exited": "corral._exec",
    "Failed": "corral._exec",
    "FileInfo": "corral._fs",
    "Forbidden": "corral._errors",
    "FsError": "corral._errors",
    "FsGateway": "corral._fs",
    "Image": "corral._images",
    "ImageLayer": "corral._images",
    "PullProgress": "corral._images",
    "RegistryAuth": "corral._images",
    "load": "corral._images",
    "pull": "corral._images",
    "registry_auths_from_docker_config": "corral._images",
    "ImageError": "corral._errors",
    "InvalidConfig": "corral._errors",
    "Sandbox": "corral._sandbox",
    "SandboxAlreadyExists": "corral._errors",
    "SandboxBuilder": "corral._sandbox",
    "SandboxHandle": "corral._sandbox",
    "SandboxConfig": "corral._config",
    "SandboxNotFound": "corral._errors",
    "SandboxNotRunning": "corral._errors",
    "SandboxRecord": "corral._state",
    "SandboxTimeout": "corral._errors",
    "Started": "corral._exec",
    "Stderr": "corral._exec",
    "Stdout": "corral._exec",
    "SyncExecStream": "corral._sync",
    "SyncFsGateway": "corral._sync",
    "SyncSandbox": "corral._sync",
    "SyncSandboxBuilder": "corral._sync",
    "Unauthorized": "corral._errors",
    "remove": "corral._sandbox",
}

__all__ = [
    "DEFAULT_IMAGE",
    "BootError",
    "ChannelError",
    "ClusterClient",
    "ClusterSandbox",
    "CorralError",
    "ExecError",
    "ExecEvent",
    "ExecFailed",
    "ExecOutput",
    "ExecStream",
    "ExecTimeout",
    "Exited",
    "Failed",
    "FileInfo",
    "Forbidden",
    "FsError",
    "FsGateway",
    "Image",
    "ImageError",
    "ImageLayer",
    "InvalidConfig",
    "PullProgress",
    "RegistryAuth",
    "Sandbox",
    "SandboxAlreadyExists",
    "SandboxBuilder",
    "SandboxConfig",
    "SandboxHandle",
    "SandboxNotFound",
    "SandboxNotRunning",
    "SandboxRecord",
    "SandboxTimeout",
    "Started",
    "Stderr",
    "Stdout",
    "SyncExecStream",
    "SyncFsGateway",
    "SyncSandbox",
    "SyncSandboxBuilder",
    "Unauthorized",
    "load",
    "pull",
    "registry_auths_from_docker_config",
    "remove",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
