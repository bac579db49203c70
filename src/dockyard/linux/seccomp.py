"""Seccomp filters from an OCI ``linux.seccomp`` object, compiled by libseccomp.

libseccomp does the BPF generation (as it does for runc and crun); this module
only translates the spec's names into its calls.
"""

from __future__ import annotations

import ctypes
import errno as _errno

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SeccompError", "cached_bpf", "compile_bpf", "load", "load_bpf"]

_ACTIONS_FIXED = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000

_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr
_ATTR_ACT_BADARCH = 2
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7

_FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
}

_ARCH_NAMES = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_RISCV64": "riscv64",
}


class SeccompError(Exception):
    """The profile cannot be compiled or loaded; the message says which part."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as err:
        raise SeccompError(f"libseccomp is not installed: {err}") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    return lib


def _action(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ERRNO":
        return _ACT_ERRNO | ((_errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return _ACT_TRACE | ((_errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    try:
        return _ACTIONS_FIXED[name]
    except KeyError:
        raise SeccompError(f"unknown seccomp action: {name}") from None


def load(profile: dict[str, Any], no_new_privileges: bool) -> None:
    """Compile ``profile`` (an OCI ``linux.seccomp`` object) and load it into this process.

    Raises ``SeccompError`` for an unknown action, operator, architecture or flag,
    and for a kernel refusal. Unknown syscall names are skipped, as runc does, so
    one profile serves kernels of different ages.
    """
    lib = _lib()
    default = _action(
        profile.get("defaultAction", "SCMP_ACT_ALLOW"), profile.get("defaultErrnoRet")
    )
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SeccompError("seccomp_init failed")
    try:
        _setup(lib, ctx, profile, no_new_privileges, default)
        ret = lib.seccomp_load(ctx)
        if ret < 0:
            raise SeccompError(f"loading seccomp filter: {_errno.errorcode.get(-ret, -ret)}")
    finally:
        lib.seccomp_release(ctx)


def _setup(lib: ctypes.CDLL, ctx: int, profile: dict[str, Any], nnp: bool, default: int) -> None:
    # libseccomp sets no_new_privs on load by default; the spec keeps that separate.
    lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 1 if nnp else 0)
    for flag in profile.get("flags") or ():
        attr = _FLAG_ATTRS.get(flag)
        if attr is None:
            raise SeccompError(f"unsupported seccomp flag: {flag}")
        if lib.seccomp_attr_set(ctx, attr, 1) < 0:
            raise SeccompError(f"seccomp flag not supported by this kernel: {flag}")
    for arch in profile.get("architectures") or ():
        name = _ARCH_NAMES.get(arch)
        if name is None:
            raise SeccompError(f"unknown seccomp architecture: {arch}")
        token = lib.seccomp_arch_resolve_name(name.encode())
        ret = lib.seccomp_arch_add(ctx, token)
        if ret < 0 and -ret != _errno.EEXIST:
            raise SeccompError(f"adding seccomp architecture {arch}: {_errno.errorcode.get(-ret)}")
    for rule in profile.get("syscalls") or ():
        action = _action(rule["action"], rule.get("errnoRet"))
        args = rule.get("args") or []
        cmps = (_ArgCmp * max(len(args), 1))()
        for i, arg in enumerate(args):
            op = _OPS.get(arg.get("op", ""))
            if op is None:
                raise SeccompError(f"unknown seccomp operator: {arg.get('op')}")
            cmps[i] = _ArgCmp(arg["index"], op, arg.get("value", 0), arg.get("valueTwo", 0))
        for name in rule.get("names") or ():
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0:
                continue
            if action == default:
                continue  # libseccomp refuses rules equal to the default action
            ret = lib.seccomp_rule_add_array(ctx, action, nr, len(args), cmps)
            if ret < 0:
                raise SeccompError(f"seccomp rule for {name}: {_errno.errorcode.get(-ret, -ret)}")


# -- compiled filters, cached by content


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def compile_bpf(profile: dict[str, Any], no_new_privileges: bool) -> bytes:
    """The BPF program libseccomp makes of ``profile`` (``struct sock_filter`` array),
    without loading it."""
    import os

    lib = _lib()
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    default = _action(
        profile.get("defaultAction", "SCMP_ACT_ALLOW"), profile.get("defaultErrnoRet")
    )
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SeccompError("seccomp_init failed")
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        _setup(lib, ctx, profile, no_new_privileges, default)
        ret = lib.seccomp_export_bpf(ctx, fd)
        if ret < 0:
            raise SeccompError(f"compiling seccomp filter: {_errno.errorcode.get(-ret, -ret)}")
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
        lib.seccomp_release(ctx)


def cached_bpf(profile: dict[str, Any], no_new_privileges: bool, cache_dir: str) -> bytes | None:
    """``compile_bpf`` of ``profile``, kept in ``cache_dir`` under a digest of the profile,
    this architecture and libseccomp's version: libseccomp needs ~12 ms for Docker's
    default profile, reading it back a fraction of one. None for a profile with filter
    flags (TSYNC, LOG, SPEC_ALLOW), which only libseccomp's own load sets."""
    import os

    from dockyard import _json

    if profile.get("flags"):
        return None
    lib = _lib()
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    text = _json.dumps(
        [profile, no_new_privileges, os.uname().machine, [v.major, v.minor, v.micro]]
    )
    from dockyard.digest import sha256

    path = os.path.join(cache_dir, sha256(text.encode()).hexdigest() + ".bpf")
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data and len(data) % 8 == 0:
            return data
    except OSError:
        pass
    data = compile_bpf(profile, no_new_privileges)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs the next start the compile
    return data


def load_bpf(program: bytes) -> None:
    """Load a compiled filter (``compile_bpf``) into this process. Without no_new_privs the
    kernel asks for CAP_SYS_ADMIN, as for libseccomp's load."""
    from dockyard.linux import syscalls as sc

    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    try:
        sc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog))
    except OSError as err:
        raise SeccompError(
            f"loading seccomp filter: {_errno.errorcode.get(err.errno or 0, err.errno)}"
        ) from None
