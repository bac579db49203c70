"""process.terminal: a pty made inside the container, its master sent over a socket.

As with runc, the caller passes ``--console-socket PATH``; the runtime connects
to it and the container's init sends the pty master with SCM_RIGHTS.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

__all__ = ["become_terminal", "connect", "forward", "open_pty", "send_master", "setup_slave"]

_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


def connect(path: str) -> int:
    """Connect to the console socket; return a plain fd that forks keep."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise OSError(err.errno, f"connecting to console socket {path}: {err.strerror}") from None
    return sock.detach()


def open_pty() -> tuple[int, int, str]:
    """Open a pty in the current /dev/pts; return (master, slave, slave path)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0\0\0\0"))[0]
    path = f"/dev/pts/{n}"
    slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave, path


def send_master(sock_fd: int, master: int, name: str) -> None:
    import socket

    sock = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(sock, [name.encode()], [master])
    finally:
        sock.detach()


def setup_slave(slave: int, size: tuple[int, int] | None = None) -> None:
    """Make ``slave`` the controlling terminal and stdio of this (session leader) process."""
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def socketpair() -> tuple[int, int]:
    """(ours, theirs): ``theirs`` plays the console socket for a foreground ``run``."""
    import socket

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def recv_master(sock_fd: int) -> int:
    import socket

    sock = socket.socket(fileno=sock_fd)
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
    finally:
        sock.detach()
    if not fds:
        raise OSError(5, "the container sent no pty master")
    return fds[0]


def proxy(master: int) -> None:
    """Copy our stdin to the pty and the pty to our stdout until the container's side closes.

    Our own terminal, if stdin is one, is put in raw mode meanwhile so that keys
    such as ^C reach the container's terminal instead of this process.
    """
    import select
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        rows, cols = os.get_terminal_size(0)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    fds = [master, 0]
    try:
        while True:
            ready, _, _ = select.select(fds, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                else:
                    os.write(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def become_terminal(console_fd: int, size: tuple[int, int] | None = None) -> None:
    """In the container's process: make a pty, send its master, take the slave as stdio."""
    master, slave, name = open_pty()
    send_master(console_fd, master, name)
    os.close(master)
    os.close(console_fd)
    setup_slave(slave, size)


def forward(ours: int) -> None:
    """In the runtime: receive the master on our socketpair end and copy until it closes."""
    master = recv_master(ours)
    os.close(ours)
    proxy(master)
    os.close(master)
