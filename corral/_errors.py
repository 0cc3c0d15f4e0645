"""Corral's error tree. Every error a user can see is one of these.

CorralError
├── InvalidConfig          a setting is wrong; names the field and the value
├── SandboxNotFound
├── SandboxAlreadyExists
├── SandboxNotRunning      stopped, crashed or stale; carries the status and reason
├── BootError              the VM did not come up; carries the console tail
├── ImageError             the image source is missing or unusable
├── ExecError
│   ├── ExecFailed         the command could not be started; `kind` says why
│   └── ExecTimeout        the command ran past its timeout and was killed
├── FsError                a guest file operation failed; `kind` says why
├── ChannelError           the guest channel broke or the guest spoke garbage
├── Unauthorized           the cluster did not accept our credentials (HTTP 401)
└── Forbidden              the cluster's RBAC does not allow it; names user, verb, resource
"""

from __future__ import annotations


class CorralError(Exception):
    """Base of every Corral error."""


class InvalidConfig(CorralError):
    def __init__(self, field: str, value: object, problem: str) -> None:
        super().__init__(f"invalid {field}={value!r}: {problem}")
        self.field = field
        self.value = value


class SandboxNotFound(CorralError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no sandbox named {name!r}")
        self.name = name


class SandboxAlreadyExists(CorralError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a sandbox named {name!r} already exists")
        self.name = name


class SandboxNotRunning(CorralError):
    def __init__(self, name: str, status: str, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"sandbox {name!r} is {status}{detail}")
        self.name = name
        self.status = status
        self.reason = reason


class SandboxTimeout(CorralError):
    """A lifecycle step did not finish in time; the sandbox may still get there."""


class BootError(CorralError):
    def __init__(self, message: str, console: str = "") -> None:
        super().__init__(message + (f"\n--- console tail ---\n{console}" if console else ""))
        self.message = message
        self.console = console


class ImageError(CorralError):
    """The image source does not exist or cannot be turned into a root disk."""


class ExecError(CorralError):
    """Base for failures of a command run in a sandbox."""


class ExecFailed(ExecError):
    """The guest could not start the command.

    `kind` is one of NotFound, PermissionDenied, NotExecutable, BadCwd, BadUser,
    InvalidArgument.
    """

    def __init__(self, kind: str, message: str, errno: int = 0) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.errno = errno


class ExecTimeout(ExecError):
    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"{command!r} timed out after {timeout:g}s and was killed")
        self.command = command
        self.timeout = timeout


class FsError(CorralError):
    """A guest file operation failed.

    `kind` is one of NotFound, PermissionDenied, Exists, NotADirectory, IsADirectory,
    NotEmpty, InvalidArgument, Io, Cancelled.
    """

    def __init__(self, kind: str, path: str, message: str, errno: int = 0) -> None:
        super().__init__(f"{kind}: {path}: {message}")
        self.kind = kind
        self.path = path
        self.errno = errno


class ChannelError(CorralError):
    """The connection to the sandbox broke, or the other side broke the protocol."""


class Unauthorized(CorralError):
    """The Kubernetes API or a node agent rejected the kubeconfig's credentials."""


class Forbidden(CorralError):
    """Authenticated, but not allowed; the message is the cluster's (user, verb, resource)."""
