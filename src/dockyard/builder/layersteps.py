"""The steps that make a layer: COPY and ADD (into a writable snapshot of the parent, then
committed), RUN (a container of the engine, attached for its output, committed), WORKDIR's
directory; and the commits and history entries they share with the config-only steps."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time

from dockyard import _json as json
from dockyard.builder import dockerfile as df
from dockyard.builder.cachekeys import CacheSteps
from dockyard.builder.expand import process_word
from dockyard.builder.options import DEFAULT_PATH, BuildError
from dockyard.clock import now_rfc3339
from dockyard.errors import DockyardError, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.builder.context import BuildContext
    from dockyard.builder.options import StageState
    from dockyard.engine.containers import Engine

__all__ = ["LayerSteps"]


class LayerSteps(CacheSteps):
    """Mixed into ``Builder``: needs ``engine``, ``context``, ``escape`` and the stage graph
    (``_parsed``, ``_results``) for COPY --from."""

    engine: Engine
    context: BuildContext
    escape: str
    _parsed: df.Dockerfile
    _results: dict[int, str]

    def _history(self, cfg: dict[str, Any], created_by: str, empty: bool) -> None:
        entry: dict[str, Any] = {
            "created": now_rfc3339(),
            "created_by": created_by,
            "comment": "buildkit.dockerfile.v0",
        }
        if empty:
            entry["empty_layer"] = True
        cfg["history"] = [*(cfg.get("history") or []), entry]

    def _config_image(self, parent: str, config: dict[str, Any], created_by: str) -> str:
        cfg = dict(self.store.config(parent))
        cfg["config"] = config
        cfg["created"] = now_rfc3339()
        self._history(cfg, created_by, empty=True)
        return self.store.create_image(cfg, self.store.layers(parent), parent=parent)

    def _commit(self, parent: str, key: str, config: dict[str, Any], created_by: str,
                exclude: frozenset[str] = frozenset(), adopt: bool = False) -> str:  # fmt: skip
        from dockyard.image.commit import commit_snapshot

        # the history comment given here: no second image when the config stays as it was
        image_id = commit_snapshot(self.store, key, parent, created_by=created_by, exclude=exclude, adopt=adopt,
                                   comment="buildkit.dockerfile.v0")  # fmt: skip
        cfg = dict(self.store.config(image_id))
        if cfg.get("config") == config:
            return image_id
        cfg["config"] = config  # WORKDIR: the layer that made the directory, and the new config
        return self.store.create_image(cfg, self.store.layers(image_id), parent=parent)

    def _workspace(self, parent: str) -> tuple[str, str]:
        """A writable snapshot of ``parent``, mounted: (snapshot key, mount point)."""
        layers = self.store.layers(parent)
        key = f"build-{os.getpid()}-{time.monotonic_ns()}"
        self.store.snapshots.prepare(key, layers[-1].chain_id if layers else None)
        target = tempfile.mkdtemp(prefix="build-", dir=self.store.root)
        self.store.snapshots.mount(key, target, volatile=True)
        return key, target

    def _close_workspace(self, key: str, target: str, keep: bool) -> None:
        from dockyard.snapshot.snapshotter import unmount

        unmount(target)
        os.rmdir(target)
        if not keep and self.store.snapshots.exists(key):
            self.store.snapshots.remove(key)

    def _workdir_image(self, state: StageState, config: dict[str, Any], created_by: str) -> str:
        key, target = self._workspace(state.image_id)
        made = False
        try:
            from dockyard.runtime.rootfs import secure_join

            path = secure_join(target, config["WorkingDir"])
            if not os.path.isdir(path):
                os.makedirs(path, 0o755)
                made = True
        finally:
            self._close_workspace(key, target, keep=True)
        try:
            if not made:
                return self._config_image(state.image_id, config, created_by)
            return self._commit(state.image_id, key, config, created_by, adopt=True)
        finally:
            if self.store.snapshots.exists(key):
                self.store.snapshots.remove(key)

    def _copy(self, state: StageState, cmd: Any, env: dict[str, str]) -> bool:
        from dockyard.builder import files

        allowed = ("chown", "chmod", "from", "link", "parents", "exclude") if cmd.cmd == "COPY" else \
            ("chown", "chmod", "link", "checksum", "keep-git-dir")  # fmt: skip
        df.check_flags(cmd, allowed, self.opts.dockerfile_name)
        words = [process_word(w, env, self.escape) for w in cmd.value]
        if len(words) < 2:
            raise InvalidArgument(
                f"{cmd.cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
            )
        *srcs, dest = words
        chown, chmod_text, source_stage = (
            df.flag(cmd, "chown"),
            df.flag(cmd, "chmod"),
            df.flag(cmd, "from"),
        )
        chmod = int(chmod_text, 8) if chmod_text else None
        heredocs = {h.name: h.content for h in cmd.heredocs}
        inputs: dict[str, Any] = {"files": {}}
        sources: list[tuple[str, str]] = []
        stage_root = None
        src_root = self.context.root
        if source_stage:
            stage_root = self._source_root(source_stage)
            src_root = stage_root[1]
            from dockyard.inroot import Root

            with Root(src_root) as root:
                for src in srcs:
                    real = root.resolve(src)
                    if not root.exists(real):
                        raise InvalidArgument(
                            f'failed to compute cache key: "{src}" not found in {source_stage}'
                        )
                    sources.append((real, src))
            inputs["from"] = stage_root[2]
        else:
            rels = []
            for src in srcs:
                if src.startswith("<<") and src[2:].lstrip("-") in heredocs:
                    continue
                if src.startswith(("http://", "https://")):
                    raise InvalidArgument(
                        "ADD from a URL is not supported: dockyard builds reach no network"
                    )
                rels += self.context.resolve(src)
            inputs["files"] = self.context.fingerprint(rels)
            sources = [(self.context.real(rel), rel) for rel in rels]
        if heredocs:
            inputs["heredocs"] = {
                k: hashlib.sha256(v.encode()).hexdigest() for k, v in heredocs.items()
            }
        canonical = f"{cmd.cmd} {' '.join(cmd.flags)} {' '.join(srcs)} {dest}".replace("  ", " ")
        inputs["workdir"] = state.config.get("WorkingDir") or "/"
        try:
            key, hit = self._lookup(state, canonical, inputs)
            if hit is not None:
                state.image_id = hit
                return True
            snap, target = self._workspace(state.image_id)
            try:
                owner = files.owner_of(target, chown) if chown else (0, 0)

                def walk(rel: str) -> list[tuple[str, os.stat_result]]:
                    if stage_root is not None:
                        top = os.path.join(src_root, rel)
                        out = []
                        for base, dirs, names in os.walk(top):
                            dirs.sort()
                            for name in sorted(dirs) + sorted(names):
                                p = os.path.join(base, name)
                                out.append((os.path.relpath(p, top), os.lstat(p)))
                        return out
                    return [
                        (os.path.relpath(p, rel) if rel else p, st)
                        for p, st in self.context.walk(rel)[1:]
                    ]

                if sources:
                    files.copy_into(target, src_root, sources, dest, state.config.get("WorkingDir") or "/", owner,
                                    chmod, unpack=cmd.cmd == "ADD", walk=walk)  # fmt: skip
                for src in srcs:
                    name = src[2:].lstrip("-") if src.startswith("<<") else None
                    if name in heredocs:
                        path = (
                            dest
                            if dest.startswith("/")
                            else os.path.join(state.config.get("WorkingDir") or "/", dest)
                        )
                        if dest.endswith("/"):
                            path = os.path.join(path, name)
                        files.write_file(target, path, heredocs[name].encode(), owner, chmod)
            finally:
                self._close_workspace(snap, target, keep=True)
            try:
                image_id = self._commit(
                    state.image_id, snap, state.config, f"{canonical} # buildkit", adopt=True
                )
            finally:
                if self.store.snapshots.exists(snap):
                    self.store.snapshots.remove(snap)
            self._remember(key, image_id, state.image_id, canonical, inputs)
            state.image_id = image_id
            return False
        finally:
            if stage_root is not None:
                self._close_workspace(stage_root[0], stage_root[1], keep=False)

    def _source_root(self, ref: str) -> tuple[str, str, str]:
        """A mounted view of a stage's (or an image's) result for COPY --from: (key, path, image ID)."""
        stage = self._parsed.stage(ref)
        if stage is not None and stage.index in self._results:
            image_id = self._results[stage.index]
        else:
            try:
                image_id = self.store.resolve(ref)
            except NotFound:
                raise InvalidArgument(f"COPY --from={ref}: no such stage or image") from None
        key, path = self._workspace(image_id)
        return key, path, image_id

    # -- RUN

    def _run(self, state: StageState, cmd: Any, env: dict[str, str]) -> bool:
        df.check_flags(cmd, ("mount", "network", "security"), self.opts.dockerfile_name)
        shell = state.config.get("Shell") or ["/bin/sh", "-c"]
        heredocs = list(cmd.heredocs)
        if cmd.json:
            argv = list(cmd.value)
        elif heredocs and len(cmd.value) == 1 and cmd.value[0].lstrip("<-") == heredocs[0].name:
            argv = [*shell, heredocs[0].content]
        else:
            script = " ".join(cmd.value)
            for h in heredocs:
                script += "\n" + h.content + h.name
            argv = [*shell, script]
        visible = dict(state.args)
        canonical = f"RUN {' '.join(cmd.flags)} {json.dumps(argv)}".replace("  ", " ")
        inputs: dict[str, Any] = {"args": visible}
        key, hit = self._lookup(state, canonical, inputs)
        if hit is not None:
            state.image_id = hit
            return True
        binds = self._run_mounts(cmd, state)
        run_env = [f"{k}={v}" for k, v in {**visible, **dict(item.partition("=")[::2] for item in state.config.get("Env") or [])}.items()]  # fmt: skip
        if not any(e.startswith("PATH=") for e in run_env):
            run_env.append(f"PATH={DEFAULT_PATH}")
        config = {"Cmd": argv, "Entrypoint": [], "Env": run_env, "User": state.config.get("User") or "",
                  "WorkingDir": state.config.get("WorkingDir") or "", "Tty": False, "OpenStdin": False,
                  "AttachStdout": True, "AttachStderr": True, "Labels": {}, "Hostname": "buildkitsandbox"}  # fmt: skip
        host = {"AutoRemove": False, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                "NetworkMode": df.flag(cmd, "network") or self.opts.network,
                "LogConfig": {"Type": "json-file", "Config": {}}, "Runtime": "dockyard-runtime",
                "Binds": binds, "Mounts": [], "Tmpfs": {}, "CapAdd": [], "CapDrop": [], "SecurityOpt": [],
                "Privileged": df.flag(cmd, "security") == "insecure", "Init": False, "PortBindings": {},
                "Dns": [], "DnsSearch": [], "Volatile": True}  # fmt: skip
        cid = self.engine.create(state.image_id, config, host)
        try:
            code, tail = self._attached(cid)
            if code != 0:
                shown = " ".join(argv[len(shell) :] if not cmd.json else argv)
                lines = "\n".join(tail[-10:])
                raise BuildError(f'process "{" ".join(argv[:len(shell)]) + " " + shown if not cmd.json else shown}" '
                                 f"did not complete successfully: exit code: {code}" + (f"\n{lines}" if lines else ""))  # fmt: skip
            created_by = f"RUN {' '.join(f'{k}={v}' for k, v in visible.items())} {' '.join(argv)} # buildkit".replace(
                "  ", " "
            )
            if visible:
                created_by = f"RUN |{len(visible)} " + created_by[4:]
            image_id = self._commit(state.image_id, cid, state.config, created_by,
                                    exclude=self.engine.mount_points(cid), adopt=True)  # fmt: skip
        finally:
            self.engine.remove(cid, force=True)
        self._remember(key, image_id, state.image_id, canonical, inputs)
        state.image_id = image_id
        return False

    def _run_mounts(self, cmd: Any, state: StageState) -> list[str]:
        binds = []
        for spec in df.flags_of(cmd, "mount"):
            opts = dict(item.partition("=")[::2] for item in spec.split(","))
            kind = opts.get("type", "bind")
            target = opts.get("target") or opts.get("dst") or opts.get("destination")
            if not target:
                raise InvalidArgument(f"--mount {spec}: no target")
            if kind == "cache":
                ident = opts.get("id") or target
                path = os.path.join(
                    self.engine.root, "build-cache", hashlib.sha256(ident.encode()).hexdigest()[:32]
                )
                os.makedirs(path, exist_ok=True)
                binds.append(f"{path}:{target}")
            elif kind == "bind":
                source = opts.get("source") or opts.get("src") or "."
                rel = (
                    self.context.real(self.context.resolve(source)[0])
                    if source not in (".", "")
                    else ""
                )
                path = os.path.join(self.context.root, rel)
                binds.append(
                    f"{path}:{target}"
                    + ("" if opts.get("rw") in ("true", "") and "rw" in opts else ":ro")
                )
            elif kind == "tmpfs":
                binds.append(f"tmpfs:{target}")
            else:
                raise InvalidArgument(
                    f"--mount type={kind} is not supported (bind, cache, tmpfs are)"
                )
        return binds

    def _attached(self, cid: str) -> tuple[int, list[str]]:
        """Start the RUN container, print its output as progress; (exit code, last lines)."""
        from dockyard.engine.attach import AttachSession

        monitor = self.engine.start(cid, attach=True)
        t0 = time.monotonic()
        tail: list[str] = []
        partial = b""

        def show(text: str) -> None:
            tail.append(text)
            self._say(f"#{self.step_no} {time.monotonic() - t0:.3f} {text}")

        def output(_kind: int, payload: bytes) -> None:
            nonlocal partial
            *lines, partial = (partial + payload).split(b"\n")
            for line in lines:
                show(line.decode(errors="replace"))

        try:
            with AttachSession(self.engine, cid, monitor.attach) as session:
                code = session.pump(output)
        except DockyardError as err:
            raise BuildError(str(err)) from None
        finally:
            monitor.wait()
        if partial:
            show(partial.decode(errors="replace"))
        return code, tail
