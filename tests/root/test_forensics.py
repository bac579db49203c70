"""image layers and image diff on images whose history is known byte for byte."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from dockyard.image.forensics import image_diff, layer_reports
from dockyard.image.store import ImageStore

pytestmark = pytest.mark.root

DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")


def _layer(entries: list[tuple[str, bytes | None]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.fixture
def images(tmp_path):  # type: ignore[no-untyped-def]
    store = ImageStore(str(tmp_path / "root"))
    specs = [
        ("base", [("a", b"1" * 100), ("b", b"2" * 200), ("d", None), ("d/x", b"3" * 50)]),
        ("edit", [("a", b"4" * 150), (".wh.b", b""), ("c", b"5")]),
        ("wipe", [("d", None), ("d/.wh..wh..opq", b""), ("d/y", b"6" * 7)]),
    ]
    layers, ids = [], []
    for name, entries in specs:
        layers.append(store.add_layer(layers[-1] if layers else None, _layer(entries)))
        config = {"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
                  "history": [{"created_by": n} for n, _ in specs[: len(layers)]]}  # fmt: skip
        ids.append(store.create_image(config, list(layers)))
        store.tag(ids[-1], f"f:{name}")
    return store, ids


def test_layer_reports_count_changes_and_waste(images) -> None:  # type: ignore[no-untyped-def]
    store, ids = images
    base, edit, wipe = layer_reports(store, ids[2])
    assert sorted(base.added) == ["/a", "/b", "/d", "/d/x"] and base.wasted == 0
    assert (edit.added, edit.changed, edit.deleted, edit.wasted) == (["/c"], ["/a"], ["/b"], 300)
    assert wipe.added == ["/d/y"] and wipe.wasted == 50  # the opaque directory hid d/x
    assert [r.created_by for r in (base, edit, wipe)] == ["base", "edit", "wipe"]


def test_image_diff(images) -> None:  # type: ignore[no-untyped-def]
    store, ids = images
    assert image_diff(store, ids[0], ids[2]) == [
        ("C", "/a"), ("D", "/b"), ("A", "/c"), ("D", "/d/x"), ("A", "/d/y"),
    ]  # fmt: skip
    assert image_diff(store, ids[2], ids[2]) == []


def test_cli_layers_and_diff(images) -> None:  # type: ignore[no-untyped-def]
    store, _ids = images

    def run(*a):
        return subprocess.run([DOCKYARD, "--root", store.root, *a], capture_output=True, text=True)

    out = run("image", "layers", "f:wipe")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["LAYER", "DIFF", "ID"]
    assert lines[2].split()[3:7] == ["1", "1", "1", "300B"]
    assert lines[-1] == "Total wasted: 350B (files a later layer overwrites or deletes)"
    data = json.loads(run("image", "layers", "--format", "json", "f:wipe").stdout)
    assert data[1]["Deleted"] == ["/b"] and data[1]["WastedBytes"] == 300
    assert run("image", "diff", "f:base", "f:edit").stdout == "C /a\nD /b\nA /c\n"
