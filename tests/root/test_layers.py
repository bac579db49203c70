"""Layer tars in and out: every entry type, whiteouts on real overlayfs, crafted attacks."""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import tarfile

import pytest
import zstandard

from dockyard.snapshot.apply import LayerError, apply_layer
from dockyard.snapshot.diff import changes, write_layer

pytestmark = pytest.mark.root


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs) -> tuple:  # type: ignore[no-untyped-def]
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.mtime = attrs.pop("mtime", 1_600_000_000)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def make_tar(entries: list[tuple], compress: str = "") -> io.BytesIO:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    body = raw.getvalue()
    if compress == "gzip":
        body = gzip.compress(body)
    elif compress == "zstd":
        body = zstandard.ZstdCompressor().compress(body)
    return io.BytesIO(body)


FULL = [
    entry("etc", tarfile.DIRTYPE, mode=0o755, mtime=1_500_000_000),
    entry("etc/hosts", data=b"127.0.0.1 localhost\n", uid=1000, gid=2000, mode=0o640),
    entry("bin", tarfile.DIRTYPE),
    entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
    entry("bin/tool-link", tarfile.LNKTYPE, linkname="bin/tool"),
    entry("bin/sh", tarfile.SYMTYPE, linkname="/bin/busybox"),
    entry("dev", tarfile.DIRTYPE),
    entry("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
    entry("dev/loop9", tarfile.BLKTYPE, devmajor=7, devminor=9, mode=0o660),
    entry("run", tarfile.DIRTYPE),
    entry("run/fifo", tarfile.FIFOTYPE, mode=0o600),
    entry("data", data=b"x", pax_headers={"SCHILY.xattr.user.origin": "layer-1"}),
]


@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
def test_every_entry_type_lands_as_written(tmp_path, compress: str) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "layer"
    n = apply_layer(make_tar(FULL, compress), str(dest))
    assert n == len(FULL)
    hosts = os.lstat(dest / "etc/hosts")
    assert (hosts.st_uid, hosts.st_gid, stat.S_IMODE(hosts.st_mode)) == (1000, 2000, 0o640)
    assert (dest / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert os.lstat(dest / "etc").st_mtime == 1_500_000_000  # set after its children
    assert stat.S_IMODE(os.lstat(dest / "bin/tool").st_mode) == 0o4755
    assert os.lstat(dest / "bin/tool").st_ino == os.lstat(dest / "bin/tool-link").st_ino
    assert os.readlink(dest / "bin/sh") == "/bin/busybox"
    null = os.lstat(dest / "dev/null")
    assert (
        stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    )
    assert stat.S_ISBLK(os.lstat(dest / "dev/loop9").st_mode)
    assert stat.S_ISFIFO(os.lstat(dest / "run/fifo").st_mode)
    assert os.getxattr(dest / "data", "user.origin") == b"layer-1"
    assert os.lstat(dest / "data").st_mtime == 1_600_000_000


def _overlay(tmp_path, lowers: list[str]) -> str:  # type: ignore[no-untyped-def]
    merged = tmp_path / "merged"
    merged.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=" + ":".join(lowers), str(merged)],
                   check=True)  # fmt: skip
    return str(merged)


def test_overlay_whiteouts_hide_lower_files_on_real_overlayfs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base, top = tmp_path / "base", tmp_path / "top"
    apply_layer(make_tar([entry("keep", data=b"1"), entry("gone", data=b"2"), entry("dir", tarfile.DIRTYPE),
                          entry("dir/old", data=b"3"), entry("other", tarfile.DIRTYPE),
                          entry("other/a", data=b"4")]), str(base))  # fmt: skip
    apply_layer(make_tar([entry(".wh.gone"), entry("dir", tarfile.DIRTYPE), entry("dir/.wh..wh..opq"),
                          entry("dir/new", data=b"5")]), str(top))  # fmt: skip
    assert stat.S_ISCHR(os.lstat(top / "gone").st_mode) and os.lstat(top / "gone").st_rdev == 0
    assert os.getxattr(top / "dir", "trusted.overlay.opaque") == b"y"
    merged = _overlay(tmp_path, [str(top), str(base)])
    try:
        assert sorted(os.listdir(merged)) == ["dir", "keep", "other"]
        assert os.listdir(os.path.join(merged, "dir")) == ["new"]  # opaque hid "old"
        assert os.listdir(os.path.join(merged, "other")) == ["a"]
    finally:
        subprocess.run(["umount", merged], check=True)


def test_flat_whiteouts_delete(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    apply_layer(make_tar([entry("a", data=b"1"), entry("d", tarfile.DIRTYPE), entry("d/x", data=b"2"),
                          entry("d/y", data=b"3")]), str(root), mode="flat")  # fmt: skip
    apply_layer(
        make_tar([entry(".wh.a"), entry("d/.wh..wh..opq"), entry("d/z", data=b"4")]),
        str(root),
        mode="flat",
    )
    assert sorted(os.listdir(root)) == ["d"]
    assert os.listdir(root / "d") == ["z"]


def test_later_entries_replace_earlier_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    apply_layer(
        make_tar([entry("p", tarfile.DIRTYPE), entry("p/f", data=b"old")]), str(root), mode="flat"
    )
    apply_layer(
        make_tar([entry("p", tarfile.SYMTYPE, linkname="elsewhere")]), str(root), mode="flat"
    )
    assert os.readlink(root / "p") == "elsewhere"


@pytest.fixture
def outside(tmp_path):  # type: ignore[no-untyped-def]
    """A directory next to the layer that no crafted tar may touch."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "passwd").write_text("root:x:0:0\n")
    return d


def _snapshot(d) -> dict:  # type: ignore[no-untyped-def]
    return {p: (os.lstat(os.path.join(d, p)).st_mode, open(os.path.join(d, p), "rb").read())
            for p in sorted(os.listdir(d))}  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("../outside/passwd", data=b"pwned")], "'..' in path"),
        ([entry("/etc/evil", data=b"pwned")], "absolute path"),
        ([entry("hl", tarfile.LNKTYPE, linkname="../outside/passwd")], "'..' in path"),
        ([entry("hl", tarfile.LNKTYPE, linkname="/etc/passwd")], "absolute path"),
        ([entry("esc", tarfile.SYMTYPE, linkname="../outside"), entry("hl", tarfile.LNKTYPE, linkname="esc/passwd")],
         "hardlink to missing"),
    ],
    ids=["dotdot", "absolute", "hardlink-dotdot", "hardlink-absolute", "hardlink-through-symlink"],
)  # fmt: skip
def test_escapes_are_refused_and_nothing_outside_changes(
    tmp_path, outside, entries, message
) -> None:  # type: ignore[no-untyped-def]
    before = _snapshot(outside)
    with pytest.raises(LayerError, match=message):
        apply_layer(make_tar(entries), str(tmp_path / "layer"))
    assert _snapshot(outside) == before


@pytest.mark.parametrize(
    ("entries", "lands"),
    [
        ([entry("outside", tarfile.DIRTYPE), entry("esc", tarfile.SYMTYPE, linkname="../outside"),
          entry("esc/passwd", data=b"pwned")], "outside/passwd"),
        ([entry("tmp", tarfile.DIRTYPE), entry("esc", tarfile.SYMTYPE, linkname="/tmp"),
          entry("esc/dropped", data=b"pwned")], "tmp/dropped"),
        ([entry("outside", tarfile.DIRTYPE), entry("a", tarfile.DIRTYPE),
          entry("a/up", tarfile.SYMTYPE, linkname="../.."), entry("a/up/outside/passwd", data=b"pwned")],
         "outside/passwd"),
        ([entry("proc/self/root", tarfile.DIRTYPE), entry("p", tarfile.SYMTYPE, linkname="/proc/self/root"),
          entry("p/dropped", data=b"pwned")], "proc/self/root/dropped"),
    ],
    ids=["symlink-relative", "symlink-absolute", "symlink-dotdot-chain", "symlink-magic"],
)  # fmt: skip
@pytest.mark.parametrize("mode", ["overlay", "flat"])
def test_symlinks_resolve_inside_the_root(tmp_path, outside, entries, lands, mode) -> None:  # type: ignore[no-untyped-def]
    """As if the layer's directory were /: what a symlink points to is looked up there."""
    before = _snapshot(outside)
    layer = tmp_path / "layer"
    apply_layer(make_tar(entries), str(layer), mode=mode)
    assert (layer / lands).read_bytes() == b"pwned"
    assert _snapshot(outside) == before
    assert not os.path.exists("/tmp/dropped")


@pytest.mark.parametrize("target", ["../outside", "/tmp", "/proc/self/root", "../../../nowhere"])
def test_symlinks_to_nothing_inside_the_root_stop_the_layer(tmp_path, outside, target) -> None:  # type: ignore[no-untyped-def]
    before = _snapshot(outside)
    with pytest.raises(LayerError, match="tar entry 'esc/dropped': No such file or directory"):
        apply_layer(make_tar([entry("esc", tarfile.SYMTYPE, linkname=target),
                              entry("esc/dropped", data=b"pwned")]), str(tmp_path / "layer"))  # fmt: skip
    assert _snapshot(outside) == before
    assert not os.path.exists("/tmp/dropped")


def test_absolute_symlink_in_a_layer_leads_inside_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    apply_layer(make_tar([entry("usr", tarfile.DIRTYPE), entry("usr/lib", tarfile.DIRTYPE),
                          entry("lib", tarfile.SYMTYPE, linkname="/usr/lib"),
                          entry("lib/libfoo.so", data=b"elf")]), str(root))  # fmt: skip
    assert (root / "usr/lib/libfoo.so").read_bytes() == b"elf"
    assert os.readlink(root / "lib") == "/usr/lib"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry(".wh...")], "whiteout of '..'"),
        ([entry("d", tarfile.DIRTYPE), entry("d/.wh...")], "whiteout of '..'"),
        ([entry(".wh..")], "whiteout of '.'"),
        ([entry(".wh.")], "whiteout of 'nothing'"),
        ([entry(".wh..wh..opq", tarfile.DIRTYPE)], "a whiteout must be an empty file"),
        ([entry(".wh..wh..opq/x", data=b"x")], "used as a directory"),
        ([entry(".wh.d/x", data=b"x")], "used as a directory"),
        ([entry(".wh.x", tarfile.SYMTYPE, linkname="..")], "a whiteout must be an empty file"),
    ],
    ids=["dotdot", "dotdot-in-dir", "dot", "empty", "opaque-dir", "opaque-as-parent",
         "whiteout-as-parent", "whiteout-symlink"],
)  # fmt: skip
@pytest.mark.parametrize("mode", ["overlay", "flat"])
def test_hostile_whiteouts_are_refused(tmp_path, outside, entries, message, mode) -> None:  # type: ignore[no-untyped-def]
    """``.wh...`` once deleted the directory above the one being unpacked."""
    layer = tmp_path / "work" / "layer"
    layer.mkdir(parents=True)
    (layer / "keep").write_text("k")
    (tmp_path / "work" / "sibling").write_text("s")
    before = _snapshot(outside)
    with pytest.raises(LayerError, match=message):
        apply_layer(make_tar(entries), str(layer), mode=mode)
    assert (layer / "keep").read_text() == "k"
    assert (tmp_path / "work" / "sibling").read_text() == "s"
    assert _snapshot(outside) == before


def test_whiteout_names_are_plain_files_in_plain_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ADD of an archive and cp: whiteouts mean nothing there, as in Docker's untar."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "victim").write_text("v")
    apply_layer(make_tar([entry(".wh...", data=b"a"), entry(".wh.victim", data=b"b")]), str(root),
                mode="plain")  # fmt: skip
    assert (root / ".wh...").read_bytes() == b"a"
    assert (root / "victim").read_text() == "v"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("n" * 256, data=b"x")], "File name too long"),
        ([entry("f", data=b"x", pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/etc"})],
         "attribute trusted.overlay.redirect is overlayfs's own"),
        ([entry("f", data=b"x"), entry("f/g", data=b"y")], "f is not a directory"),
    ],
    ids=["long-name", "overlay-xattr", "file-as-dir"],
)  # fmt: skip
def test_bad_entries_are_one_line_errors(tmp_path, entries, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LayerError, match=message) as err:
        apply_layer(make_tar(entries), str(tmp_path / "layer"))
    assert "\n" not in str(err.value)


def test_symlink_inside_the_layer_is_followed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    apply_layer(make_tar([entry("usr", tarfile.DIRTYPE), entry("usr/lib", tarfile.DIRTYPE),
                          entry("lib", tarfile.SYMTYPE, linkname="usr/lib"),
                          entry("lib/libc.so", data=b"elf")]), str(root), mode="flat")  # fmt: skip
    assert (root / "usr/lib/libc.so").read_bytes() == b"elf"


def test_garbage_and_truncated_input(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LayerError, match=r"not a tar archive|corrupt layer"):
        apply_layer(io.BytesIO(b"this is not a tar" * 100), str(tmp_path / "a"))
    data = make_tar([entry("big", data=os.urandom(100_000))]).getvalue()
    with pytest.raises(LayerError, match="corrupt layer"):
        apply_layer(io.BytesIO(data[:50_000]), str(tmp_path / "b"))


def test_upper_dir_to_layer_and_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    apply_layer(make_tar([entry("etc", tarfile.DIRTYPE), entry("etc/conf", data=b"v1"), entry("old", data=b"o"),
                          entry("cache", tarfile.DIRTYPE), entry("cache/x", data=b"x")]), str(lower))  # fmt: skip
    apply_layer(make_tar([entry("etc", tarfile.DIRTYPE), entry("etc/conf", data=b"v2"), entry(".wh.old"),
                          entry("cache", tarfile.DIRTYPE), entry("cache/.wh..wh..opq"),
                          entry("new", data=b"n", uid=5, gid=6, mode=0o600)]), str(upper))  # fmt: skip
    assert changes(str(upper), [str(lower)]) == [
        ("C", "/cache"), ("C", "/etc"), ("C", "/etc/conf"), ("A", "/new"), ("D", "/old"),
    ]  # fmt: skip
    first, second = io.BytesIO(), io.BytesIO()
    write_layer(str(upper), first)
    write_layer(str(upper), second)
    assert first.getvalue() == second.getvalue()  # deterministic
    with tarfile.open(fileobj=io.BytesIO(first.getvalue())) as tar:
        names = [m.name for m in tar]
    assert names == ["cache", "cache/.wh..wh..opq", "etc", "etc/conf", "new", ".wh.old"]
    flat = tmp_path / "flat"
    apply_layer(make_tar([entry("old", data=b"o"), entry("cache", tarfile.DIRTYPE),
                          entry("cache/x", data=b"x")]), str(flat), mode="flat")  # fmt: skip
    apply_layer(io.BytesIO(first.getvalue()), str(flat), mode="flat")
    assert sorted(os.listdir(flat)) == ["cache", "etc", "new"]
    assert os.listdir(flat / "cache") == []
    assert (flat / "etc/conf").read_bytes() == b"v2"
    st = os.lstat(flat / "new")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (5, 6, 0o600)


@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
def test_a_layer_unpacked_while_it_streams_is_the_layer_unpacked_from_its_blob(
    tmp_path, compress: str
) -> None:  # type: ignore[no-untyped-def]
    """What a pull does: the blob's bytes go through a pipe to an unpacker as they arrive;
    the layer it makes (files, diff ID, chain ID under a parent) is the one unpacking the
    stored blob makes. A stream the unpacker refuses leaves nothing and says so (None)."""
    from dockyard.content import Descriptor
    from dockyard.image.store import ImageStore
    from dockyard.registry.streaming import StreamedLayer

    base = make_tar(
        [entry("etc", tarfile.DIRTYPE), entry("etc/os-release", data=b"base\n")]
    ).getvalue()
    blob = make_tar([*FULL, entry("etc/.wh.os-release")], compress).getvalue()
    reference, streamed = ImageStore(str(tmp_path / "ref")), ImageStore(str(tmp_path / "streamed"))
    expected = reference.add_layer(reference.add_layer(None, io.BytesIO(base)), io.BytesIO(blob))
    parent = streamed.add_layer(None, io.BytesIO(base))
    layer = StreamedLayer(streamed)
    for i in range(0, len(blob), 100):  # as the download delivers it
        layer.pipe.write(blob[i : i + 100])
    desc = streamed.content.ingest(blob)
    layer.pipe.close()
    staged = layer.result()
    assert staged is not None
    key, diff_id, size = staged
    got = streamed.adopt_layer(
        parent, Descriptor(desc.digest, desc.size), key, staged=(diff_id, size)
    )
    assert got == expected

    def tree(store: ImageStore, chain: str) -> list[str]:
        """``ls -lnR`` of a layer, mtimes kept except a whiteout's (made when unpacked)."""
        out = subprocess.run(["ls", "-lnR", "--time-style=+%s", store.snapshots.fs(chain)], capture_output=True,
                             text=True).stdout.replace(store.root, "ROOT")  # fmt: skip
        return [" ".join(line.split()[:6] + line.split()[7:]) if line.startswith("c") else line
                for line in out.splitlines()]  # fmt: skip

    assert tree(streamed, got.chain_id) == tree(reference, expected.chain_id)
    refused = StreamedLayer(streamed)
    refused.pipe.write(make_tar([entry("../escape", data=b"x")]).getvalue())
    refused.pipe.close()
    assert refused.result() is None
    assert [i.name for i in streamed.snapshots.list() if i.kind == "active"] == []
    half = StreamedLayer(streamed)
    half.pipe.write(blob[: len(blob) // 2])
    half.discard()  # the pull failed meanwhile
    assert [i.name for i in streamed.snapshots.list() if i.kind == "active"] == []
    assert not os.path.exists(str(tmp_path / "streamed" / "escape"))


def test_big_files_written_past_the_page_cache_land_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``direct``: files of 4 MiB and more go through an aligned buffer with O_DIRECT; an
    unaligned tail is padded and truncated back, and owner, mode and mtime still apply."""
    big = os.urandom((5 << 20) + 3)
    exact = os.urandom(8 << 20)
    dest = tmp_path / "d"
    apply_layer(make_tar([entry("big", data=big, uid=7, gid=8, mode=0o751, mtime=1_234_567_890),
                          entry("exact", data=exact), entry("small", data=b"tiny")]), str(dest), direct=True)  # fmt: skip
    assert (dest / "big").read_bytes() == big
    assert (dest / "exact").read_bytes() == exact
    assert (dest / "small").read_bytes() == b"tiny"
    st = os.stat(dest / "big")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (
        7,
        8,
        0o751,
        1_234_567_890,
    )
