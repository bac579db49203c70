"""Image references, parsed and normalised as Docker does.

``busybox`` is ``docker.io/library/busybox:latest`` and is shown as
``busybox:latest``; ``localhost:5000/app@sha256:...`` keeps its registry.
The grammar is distribution's ``reference`` package.
"""

from __future__ import annotations

import re
from collections import namedtuple

from dockyard.errors import InvalidArgument

__all__ = ["DEFAULT_DOMAIN", "Reference", "parse"]

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL = "library/"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_NAME_MAX = 255


class Reference(namedtuple("Reference", "domain path tag digest", defaults=(None, None))):
    """A normalised reference: registry domain, repository path, tag and/or digest."""

    __slots__ = ()

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """``busybox``, as ``docker images`` shows the repository."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix(_OFFICIAL) if self.path.count("/") == 1 else self.path

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """``busybox:latest``: the short form Docker prints."""
        return self.familiar_name + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    # Docker: the first component is a registry if it looks like a host.
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL + remainder
    return domain, remainder


def parse(text: str, default_tag: str | None = "latest") -> Reference:
    """Parse and normalise ``text``; a reference without tag or digest gets ``default_tag``.

    Raises InvalidArgument with Docker's wording for malformed references.
    """
    if not text or text != text.strip():
        raise InvalidArgument(f"invalid reference format: {text!r}")
    domain, path_with_rest = _split_domain(text)
    if any(c.isupper() for c in path_with_rest.split("@", 1)[0].rsplit(":", 1)[0]):
        raise InvalidArgument("invalid reference format: repository name must be lowercase")
    m = _REFERENCE.match(f"{domain}/{path_with_rest}")
    if m is None:
        raise InvalidArgument(f"invalid reference format: {text}")
    path = m.group("path")
    if len(f"{domain}/{path}") > _NAME_MAX:
        raise InvalidArgument(f"repository name must not be more than {_NAME_MAX} characters")
    tag, digest = m.group("tag"), m.group("digest")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(m.group("domain") or domain, path, tag, digest)
