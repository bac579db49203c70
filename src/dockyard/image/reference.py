"""Image references, parsed and normalised as Docker does.

``busybox`` is ``docker.io/library/busybox:latest`` and is shown as
``busybox:latest``; ``localhost:5000/app@sha256:...`` keeps its registry.
The grammar is distribution's ``reference`` package.
"""

from __future__ import annotations

from collections import namedtuple

from dockyard.errors import InvalidArgument

__all__ = ["DEFAULT_DOMAIN", "Reference", "parse"]

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL = "library/"

# distribution's reference grammar, checked by hand: ``re`` costs every command ~8 ms of
# start-up here, and every ``run`` parses a reference.
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WORD = _ALNUM | frozenset("_")
_HEX = frozenset("0123456789abcdefABCDEF")


def _component_ok(text: str) -> bool:
    """[a-z0-9]+ runs joined by one of ``.``, ``_``, ``__`` or a run of ``-``."""
    if not text or text[0] not in _LOWER_ALNUM or text[-1] not in _LOWER_ALNUM:
        return False
    i = 0
    while i < len(text):
        if text[i] in _LOWER_ALNUM:
            i += 1
            continue
        j = i
        while j < len(text) and text[j] not in _LOWER_ALNUM:
            j += 1
        sep = text[i:j]
        if sep not in (".", "_", "__") and sep.strip("-"):
            return False
        i = j
    return True


def _host_part_ok(text: str) -> bool:
    return bool(text) and _ALNUM.issuperset(text.replace("-", "")) and text[0] != "-" != text[-1]


def _domain_ok(text: str) -> bool:
    host, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon:
        host = text
    elif not port.isdigit() or not port.isascii():
        return False
    if host.startswith("[") and host.endswith("]"):
        return len(host) > 2 and (_HEX | {":"}).issuperset(host[1:-1])
    return all(_host_part_ok(part) for part in host.split("."))


def _tag_ok(text: str) -> bool:
    return 0 < len(text) <= 128 and text[0] in _WORD and (_WORD | {".", "-"}).issuperset(text)


def _digest_ok(text: str) -> bool:
    algorithm, colon, hexpart = text.partition(":")
    if not colon or len(hexpart) < 32 or not _HEX.issuperset(hexpart):
        return False
    pieces = algorithm.replace("-", "_").replace("+", "_").replace(".", "_").split("_")
    return all(p and p[0].isascii() and p[0].isalpha() and _ALNUM.issuperset(p) for p in pieces)


def _match(full: str) -> tuple[str, str, str | None, str | None] | None:
    """(domain, path, tag, digest) of ``DOMAIN/PATH[:TAG][@DIGEST]``, or None."""
    name, at, digest = full.partition("@")
    if at and not _digest_ok(digest):
        return None
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _tag_ok(tag):
            return None
    domain, _, path = name.partition("/")
    if not _domain_ok(domain) or not all(_component_ok(c) for c in path.split("/")):
        return None
    return domain, path, tag, digest if at else None


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
    m = _match(f"{domain}/{path_with_rest}")
    if m is None:
        raise InvalidArgument(f"invalid reference format: {text}")
    domain, path, tag, digest = m
    if len(f"{domain}/{path}") > _NAME_MAX:
        raise InvalidArgument(f"repository name must not be more than {_NAME_MAX} characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(domain, path, tag, digest)
