"""Image references normalise exactly as Docker's do."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image.reference import parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/foo/bar", "docker.io/foo/bar:latest", "foo/bar:latest"),
        ("myuser/app:v2", "docker.io/myuser/app:v2", "myuser/app:v2"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/a/b:c", "localhost:5000/a/b:c", "localhost:5000/a/b:c"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app:latest"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"quay.io/o/x:v1@{DIGEST}", f"quay.io/o/x:v1@{DIGEST}", f"quay.io/o/x:v1@{DIGEST}"),
        (
            "a.b_c__d-e--f:Tag.1-x",
            "docker.io/library/a.b_c__d-e--f:Tag.1-x",
            "a.b_c__d-e--f:Tag.1-x",
        ),
    ],
)
def test_normalisation(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Busybox", "repository name must be lowercase"),
        ("myuser/App", "repository name must be lowercase"),
        ("", "invalid reference format"),
        ("bad name", "invalid reference format"),
        ("a::b", "invalid reference format"),
        ("-lead", "invalid reference format"),
        ("x@sha256:short", "invalid reference format"),
        ("x:" + "t" * 129, "invalid reference format"),
        ("a/" * 130 + "b", "must not be more than 255 characters"),
    ],
)
def test_bad_references(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(text)


def test_no_default_tag_when_asked() -> None:
    assert parse("busybox", default_tag=None).tag is None
    assert parse("busybox").with_tag("1").familiar() == "busybox:1"
