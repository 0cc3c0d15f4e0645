"""Image references: `[registry/]repository[:tag][@digest]`, parsed and normalised.

Pure. Follows the grammar of the distribution project's `reference` package: a first
component with a `.` or `:`, or `localhost`, is a registry; otherwise the image is on
Docker Hub, where a single-component name lives under `library/`. Every error names the
input that was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from corral._errors import ImageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MAX_NAME_LENGTH = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


def validate_digest(digest: str) -> str:
    """`digest` if it is a well-formed sha256 digest (the only algorithm accepted)."""
    if not _SHA256.fullmatch(digest):
        raise ImageError(f"invalid digest {digest!r}: expected sha256: and 64 lowercase hex digits")
    return digest


@dataclass(frozen=True)
class Reference:
    """A normalised reference; `tag` is "latest" when neither a tag nor a digest is given."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def locator(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """The host serving the registry API (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse and normalise `text`: `alpine` → `docker.io/library/alpine:latest`."""
    if not text or text != text.strip():
        raise ImageError(f"invalid image reference {text!r}: empty or surrounded by spaces")
    name, digest = text, None
    if "@" in text:
        name, digest = text.split("@", 1)
        try:
            validate_digest(digest)
        except ImageError as exc:
            raise ImageError(f"invalid image reference {text!r}: {exc}") from None
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ImageError(f"invalid image reference {text!r}: bad tag {tag!r}")
    registry, repository = _split_registry(name, text)
    if len(repository) + len(registry) + 1 > MAX_NAME_LENGTH:
        raise ImageError(f"invalid image reference {text!r}: name longer than 255 characters")
    for component in repository.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise ImageError(
                f"invalid image reference {text!r}: bad repository component {component!r} "
                "(lowercase letters, digits and . _ - separators)"
            )
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


def _split_registry(name: str, text: str) -> tuple[str, str]:
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST.fullmatch(first):
            raise ImageError(f"invalid image reference {text!r}: bad registry {first!r}")
        if first == "index.docker.io":
            first = DOCKER_HUB
        if first == DOCKER_HUB and "/" not in rest:
            rest = f"library/{rest}"
        return first, rest
    if not rest:
        return DOCKER_HUB, f"library/{name}"
    return DOCKER_HUB, name
