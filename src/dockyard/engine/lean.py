"""The monitor's idle loop, run as ``python -S lean.py ...`` with C modules only.

A running container spends its life here: copying output to the json-file log
and to attached clients, passing input along, and waiting for the exit. The
full monitor (``engine.monitor``) sets the container up, then execs this to
hold a few megabytes instead of the engine's working set; when the container
exits, this execs the full monitor again (``--finish CODE``) for the
bookkeeping. Same process throughout, so it stays the container's parent.

No imports beyond the interpreter's C modules (``posix`` rather than ``os``,
``_json`` only once there is something to encode), so nothing of the standard
library's Python code or of site-packages is loaded; the monitor runs it
compiled (``monitor.lean_program``) so that no compiler runs either.

When an attached client may do the bookkeeping itself (a foreground ``run``
without a restart policy: it has the engine loaded already), the exit frame
says so and, once the client confirms, this process just exits.

Every health-check interval it starts ``python -m dockyard.engine.health`` for
one check (only for containers that have a check), so none of that code lives here.

argv: PYTHON MONITOR_ARGV_JSON PID TTY IN_FD LISTEN_FD LOG_PATH MAX_SIZE MAX_FILES CLIENT_FINISH
      HEALTH_INTERVAL_NS OUT_FD:NAME... CLIENT_FD:client...
"""

import _signal
import _socket
import posix as os  # not ``os``: that module and what it imports cost ~170 KiB per monitor
import select
import time

STDIN, STDOUT, STDERR, EXIT, STDIN_CLOSE, RESIZE, FINISHED, CLAIM = 0, 1, 2, 3, 4, 5, 6, 7


def now():
    # dockyard.clock's now_rfc3339, written out: this module loads nothing but C modules
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Log:
    def __init__(self, path, max_size, max_files):
        # no path: the "none" log driver (output kept nowhere)
        self.path, self.max_size, self.max_files = path, max_size, max_files
        self.fd = os.open(
            path or "/dev/null", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
        )
        self.size = os.fstat(self.fd).st_size if path else 0
        self.partial = {"stdout": b"", "stderr": b""}

    def write(self, name, data, final=False):
        if not self.path:
            return
        buf = self.partial[name] + data
        lines = buf.split(b"\n")
        self.partial[name] = lines.pop()
        for line in lines:
            self.emit(name, line + b"\n")
        while len(self.partial[name]) >= 16384:
            self.emit(name, self.partial[name][:16384])
            self.partial[name] = self.partial[name][16384:]
        if final and self.partial[name]:
            self.emit(name, self.partial[name])
            self.partial[name] = b""

    def emit(self, name, chunk):
        import _json

        text = chunk.decode("utf-8", "replace")
        rec = (
            '{"log":'
            + _json.encode_basestring_ascii(text)
            + ',"stream":"'
            + name
            + '","time":"'
            + now()
            + '"}\n'
        ).encode()
        os.write(self.fd, rec)
        self.size += len(rec)
        if self.size >= self.max_size:
            os.close(self.fd)
            for i in range(self.max_files - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                try:
                    os.replace(src, f"{self.path}.{i}")
                except FileNotFoundError:
                    pass
            if self.max_files <= 1:
                os.truncate(self.path, 0)
            self.fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
            self.size = 0


def frame(kind, payload):
    return bytes((kind, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


def main(argv, in_process=()):
    """The loop. ``in_process``: called by the full monitor for an attached start (which
    saves an interpreter's start-up before the first output) with the command line that
    runs this loop on its own (PYTHON -I -S PROGRAM), exec'd once no client is attached
    any more, to shed the engine's memory."""
    (
        python,
        monitor_argv,
        pid,
        tty,
        in_fd,
        listen_fd,
        log_path,
        max_size,
        max_files,
        client_finish,
        health,
    ) = argv[:11]
    pid, tty, in_fd, listen_fd = int(pid), tty == "1", int(in_fd), int(listen_fd)
    interval = int(health) / 1e9
    next_check = time.monotonic() + interval if interval else None
    checking = 0  # the health check running now
    outs = {}
    client_fds = []
    for item in argv[11:]:
        fd, _, name = item.partition(":")
        if name == "client":
            client_fds.append(int(fd))
        else:
            outs[int(fd)] = name
    # Who may record the exit (ClientFinish): the client the container was started for,
    # else the first client that claimed it (one stopping the container) still connected
    claims = list(client_fds)
    log = Log(log_path, int(max_size), int(max_files))
    listener = _socket.socket(fileno=listen_fd)
    clients = {fd: [_socket.socket(fileno=fd), b""] for fd in client_fds}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda *a: None)

    def send(kind, data):
        for fd, (sock, _buf) in list(clients.items()):
            try:
                sock.sendall(frame(kind, data))
            except OSError:
                drop(fd)

    def drop(fd):
        sock, _buf = clients.pop(fd)
        sock.close()

    open_outs = dict(outs)
    exited = None
    while True:
        while True:  # reap: the container, health checks, and orphans handed to us
            try:
                done, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if done == 0:
                break
            if done == pid and exited is None:
                exited = os.waitstatus_to_exitcode(status)
                exited = 128 - exited if exited < 0 else exited
            elif done == checking:
                # as Docker: the next check starts an interval after this one finished,
                # so a check slower than the interval never overlaps the next
                checking = 0
                next_check = time.monotonic() + interval
        if exited is not None and (not open_outs or tty):
            break
        if (
            next_check is not None
            and not checking
            and exited is None
            and time.monotonic() >= next_check
        ):
            args = _scan()(monitor_argv, 0)[0]
            checking = os.posix_spawn(
                python, [python, "-m", "dockyard.engine.health", *args[2:5]], os.environ
            )
            next_check = None
        watch = [*open_outs, wake_r, listen_fd, *clients]
        timeout = None if exited is None else 0.05
        if next_check is not None and exited is None:
            timeout = max(next_check - time.monotonic(), 0)
        try:
            ready, _, _ = select.select(watch, [], [], timeout)
        except InterruptedError:
            continue
        for fd in ready:
            if fd == wake_r:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            elif fd == listen_fd:
                cfd, _addr = listener._accept()
                os.set_inheritable(cfd, True)
                clients[cfd] = [_socket.socket(fileno=cfd), b""]
            elif fd in clients:
                frames = read_frames(clients, fd)
                for kind, payload in frames or ():
                    if kind == STDIN and in_fd >= 0:
                        try:
                            os.write(in_fd, payload)
                        except OSError:
                            pass
                    elif kind == CLAIM:
                        claims.append(fd)
                    elif kind == STDIN_CLOSE and in_fd >= 0 and not tty:
                        os.close(in_fd)
                        in_fd = -1
                    elif kind == RESIZE and tty:
                        import fcntl
                        import termios

                        size_obj = _scan()(payload.decode(), 0)[0]
                        packed = (
                            size_obj["h"].to_bytes(2, "little")
                            + size_obj["w"].to_bytes(2, "little")
                            + bytes(4)
                        )
                        fcntl.ioctl(in_fd, termios.TIOCSWINSZ, packed)
            else:
                name = open_outs[fd]
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    log.write(name, b"", final=True)
                    del open_outs[fd]
                    continue
                log.write(name, data)
                send(STDOUT if name == "stdout" else STDERR, data)
        if in_process and not clients and exited is None:
            for name in ("stdout", "stderr"):
                log.write(name, b"", final=True)
            os.close(log.fd)
            _signal.set_wakeup_fd(-1)
            outs_args = [f"{fd}:{name}" for fd, name in outs.items()]
            os.execv(in_process[0], [*in_process, *argv[:11], *outs_args])
    for fd, name in open_outs.items():
        # A pty's last output may still sit in its buffer when the process is gone.
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EAGAIN: drained; EIO: the other side closed
                break
            if not data:
                break
            log.write(name, data)
            send(STDOUT if name == "stdout" else STDERR, data)
        log.write(name, b"", final=True)
    os.close(log.fd)
    for fd in outs:
        try:
            os.close(fd)
        except OSError:
            pass
    if in_fd >= 0 and not tty:
        os.close(in_fd)
    _signal.set_wakeup_fd(-1)
    # A stopping client claims the exit before it signals, so its claim may still sit
    # unread (or its connection unaccepted) when the exit is seen: take those in first.
    for _ in range(8):
        ready, _, _ = select.select([listen_fd, *clients], [], [], 0)
        if not ready:
            break
        for fd in ready:
            if fd == listen_fd:
                cfd, _addr = listener._accept()
                os.set_inheritable(cfd, True)
                clients[cfd] = [_socket.socket(fileno=cfd), b""]
            elif fd in clients:
                claims += [fd for kind, _payload in read_frames(clients, fd) or () if kind == CLAIM]
    finisher = next((fd for fd in claims if fd in clients), None)
    if client_finish == "1" and finisher is not None and handed_over(clients, exited, finisher):
        os._exit(0)
    args = _scan()(monitor_argv, 0)[0]
    args += ["--finish", str(exited), "--listen-fd", str(listen_fd)]
    for fd in clients:
        args += ["--client-fd", str(fd)]
    os.execv(python, [python, *args])


def read_frames(clients, fd):
    """Complete frames now readable from client ``fd``; None (and the client dropped) at EOF."""
    sock, buf = clients[fd]
    try:
        data = sock.recv(65536)
    except OSError:
        data = b""
    if not data:
        del clients[fd]
        sock.close()
        return None
    buf += data
    frames = []
    while len(buf) >= 8:
        size = int.from_bytes(buf[4:8], "big")
        if len(buf) < 8 + size:
            break
        frames.append((buf[0], buf[8 : 8 + size]))
        buf = buf[8 + size :]
    clients[fd][1] = buf
    return frames


def handed_over(clients, code, finisher):
    """Offer the exit to client ``finisher``; True once it has recorded it, and then the
    other clients are told the code (after the record, as the finisher would)."""
    sock = clients[finisher][0]
    try:
        sock.sendall(frame(EXIT, ('{"ExitCode":' + str(code) + ',"ClientFinish":true}').encode()))
    except OSError:
        return False
    deadline = time.monotonic() + 30
    while finisher in clients and time.monotonic() < deadline:
        ready, _, _ = select.select([finisher], [], [], deadline - time.monotonic())
        if ready and any(
            kind == FINISHED for kind, _payload in read_frames(clients, finisher) or ()
        ):
            for fd, (other, _buf) in list(clients.items()):
                if fd != finisher:
                    try:
                        other.sendall(frame(EXIT, ('{"ExitCode":' + str(code) + "}").encode()))
                    except OSError:
                        pass
            return True
    return False


def _scan():
    import _json

    return _json.make_scanner(_Ctx())


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo = {}


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
