"""Corral: run AI agents and untrusted code in microVM sandboxes.

This module is the public SDK surface; everything else is private.
"""

from corral._config import SandboxConfig
from corral._errors import (
    BootError,
    ChannelError,
    CorralError,
    ExecError,
    ExecFailed,
    ExecTimeout,
    FsError,
    ImageError,
    InvalidConfig,
    SandboxAlreadyExists,
    SandboxNotFound,
    SandboxNotRunning,
    SandboxTimeout,
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
from corral._sandbox import Sandbox, SandboxBuilder, remove
from corral._state import SandboxRecord
from corral._sync import SyncExecStream, SyncFsGateway, SyncSandbox, SyncSandboxBuilder

DEFAULT_IMAGE = "default"

__all__ = [
    "DEFAULT_IMAGE",
    "BootError",
    "ChannelError",
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
    "FsError",
    "FsGateway",
    "ImageError",
    "InvalidConfig",
    "Sandbox",
    "SandboxAlreadyExists",
    "SandboxBuilder",
    "SandboxConfig",
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
    "remove",
]
