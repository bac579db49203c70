"""Device access rules for cgroup v2, as an eBPF program attached to the cgroup.

cgroup v2 has no ``devices.allow``/``devices.deny`` files: a program of type
``BPF_PROG_TYPE_CGROUP_DEVICE`` attached to the cgroup answers, for every open
or mknod of a device node by a process inside, allow (1) or deny (0). This
module turns OCI device rules into such a program — the rules first reduced the
way the v1 controller applies them in order (an ``a`` rule resets to allow-all
or deny-all; other rules become exceptions to that default, or take access
away from one), so that a spec means the same on v1 and v2, as in runc — and
loads and attaches it with the ``bpf(2)`` syscall (ctypes, no libbpf).
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import NamedTuple

__all__ = ["DeviceException", "attach_device_filter", "device_filter", "reduce_rules"]

_BPF_NR = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_PROG_TYPE_CGROUP_DEVICE = 15
_ATTACH_CGROUP_DEVICE = 6
_F_ALLOW_OVERRIDE = 1  # attaching again (``update``) replaces the program

# struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
_DEV_TYPE = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}
_ALL_ACCESS = 7

# opcodes (eBPF instruction set)
_LDX_W, _AND_K, _RSH_K, _MOV_X, _MOV_K = 0x61, 0x57, 0x77, 0xBF, 0xB7
_JNE_K, _JEQ_K, _EXIT = 0x55, 0x15, 0x95


class DeviceException(NamedTuple):
    """A device class that departs from the default: type ``a``/``b``/``c``, major and
    minor (None: any), access bits."""

    type: str
    major: int | None
    minor: int | None
    access: int


def _access_bits(text: str | None) -> int:
    bits = 0
    for ch in text or "rwm":
        bits |= _ACCESS.get(ch, 0)
    return bits


def _number(value: int | None) -> int | None:
    return None if value is None or value < 0 else value


def reduce_rules(rules: list[dict]) -> tuple[bool, list[DeviceException]]:
    """(allowed by default, exceptions) after applying OCI device ``rules`` in order to a
    cgroup that starts allowing everything, as the v1 devices controller does."""
    default_allow = True
    exceptions: list[DeviceException] = []
    for rule in rules:
        kind = rule.get("type") or "a"
        major, minor = _number(rule.get("major")), _number(rule.get("minor"))
        access = _access_bits(rule.get("access"))
        allow = bool(rule.get("allow"))
        if kind == "a" and major is None and minor is None:
            default_allow, exceptions = allow, []
            continue
        same = [e for e in exceptions if (e.type, e.major, e.minor) == (kind, major, minor)]
        if allow == default_allow:  # takes access away from a matching exception
            for e in same:
                exceptions.remove(e)
                if e.access & ~access:
                    exceptions.append(e._replace(access=e.access & ~access))
        elif same:
            exceptions[exceptions.index(same[0])] = same[0]._replace(access=same[0].access | access)
        else:
            exceptions.append(DeviceException(kind, major, minor, access))
    return default_allow, exceptions


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def device_filter(rules: list[dict]) -> bytes:
    """The eBPF program for ``rules``: the instructions, 8 bytes each."""
    default_allow, exceptions = reduce_rules(rules)
    prog = [
        _insn(_LDX_W, 2, 1, 0),  # r2 = access_type
        _insn(_AND_K, 2, imm=0xFFFF),  # r2 = device type
        _insn(_LDX_W, 3, 1, 0),
        _insn(_RSH_K, 3, imm=16),  # r3 = access asked for
        _insn(_LDX_W, 4, 1, 4),  # r4 = major
        _insn(_LDX_W, 5, 1, 8),  # r5 = minor
    ]
    for e in exceptions:
        # each test jumps past the rest of this block when the exception does not apply
        tests: list[tuple[int, int, int, int]] = []  # (code, dst, imm, extra before)
        if e.type != "a":
            tests.append((_JNE_K, 2, _DEV_TYPE[e.type], 0))
        if e.major is not None:
            tests.append((_JNE_K, 4, e.major, 0))
        if e.minor is not None:
            tests.append((_JNE_K, 5, e.minor, 0))
        block: list[tuple[int, int, int, int] | bytes] = list(tests)
        block.append(_insn(_MOV_X, 1, 3))  # r1 = access asked for
        if default_allow:  # a deny exception applies when any asked bit is denied
            block.append(_insn(_AND_K, 1, imm=e.access))
            block.append((_JEQ_K, 1, 0, 0))
        else:  # an allow exception applies when every asked bit is allowed
            block.append(_insn(_AND_K, 1, imm=_ALL_ACCESS & ~e.access))
            block.append((_JNE_K, 1, 0, 0))
        block.append(_insn(_MOV_K, 0, imm=0 if default_allow else 1))
        block.append(_insn(_EXIT))
        for i, item in enumerate(block):
            if isinstance(item, tuple):
                code, dst, imm, _ = item
                prog.append(_insn(code, dst, off=len(block) - i - 1, imm=imm))
            else:
                prog.append(item)
    prog.append(_insn(_MOV_K, 0, imm=1 if default_allow else 0))
    prog.append(_insn(_EXIT))
    return b"".join(prog)


def _bpf(cmd: int, attr: bytes) -> int:
    nr = _BPF_NR.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"bpf is not wired for {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf: {os.strerror(err)}")
    return ret


def attach_device_filter(cgroup_dir: str, rules: list[dict]) -> None:
    """Load the program for ``rules`` and attach it to ``cgroup_dir`` (a cgroup v2 directory),
    replacing the one attached before."""
    code = device_filter(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(1 << 16)
    # union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type
    attr = struct.pack("<IIQQIIQII16sII", _PROG_TYPE_CGROUP_DEVICE, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(license_), 1, len(log), ctypes.addressof(log), 0, 0,
                       b"dockyard_dev", 0, 0)  # fmt: skip
    try:
        prog = _bpf(_BPF_PROG_LOAD, attr)
    except OSError as err:
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(err.errno, f"loading the device filter: {err.strerror}"
                      + (f" ({detail[-1]})" if detail else "")) from None  # fmt: skip
    try:
        target = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _bpf(
                _BPF_PROG_ATTACH,
                struct.pack("<IIII", target, prog, _ATTACH_CGROUP_DEVICE, _F_ALLOW_OVERRIDE),
            )
        finally:
            os.close(target)
    finally:
        os.close(prog)  # the attachment holds the program
