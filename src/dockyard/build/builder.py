"""``dockyard build``: a Dockerfile's stages, step by step, with Docker's cache rules.

Every step makes an image (untagged) from its parent image: RUN runs a
container of the engine and commits what it changed; COPY/ADD write into a
snapshot of the parent and commit that; the other instructions change the
config only (an ``empty_layer`` history entry). A step is looked up in the
cache before it runs, by a key of its parent image, its instruction (after
variable expansion), and for COPY/ADD the content of its sources (names, types,
modes, owners, bytes; not times) or for RUN the build args it can see. The
inputs behind each key are kept, so ``--explain-cache`` can say which one
changed when a step misses.

Only the stages the target needs are built. Progress is printed as BuildKit's
plain progress (``#N [stage i/n] INSTRUCTION``, output lines with their time,
``CACHED`` or ``DONE 0.3s``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace

from dockyard import _json as json
from dockyard.build import dockerfile as df
from dockyard.build.context import BuildContext
from dockyard.build.expand import process_word, process_words
from dockyard.busy import changing
from dockyard.clock import now_rfc3339
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.units import duration_ns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from dockyard.engine.containers import Engine

__all__ = ["BuildError", "BuildOptions", "Builder"]

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CONFIG_ONLY = ("ENV", "LABEL", "EXPOSE", "CMD", "ENTRYPOINT", "USER", "VOLUME", "STOPSIGNAL",
                "HEALTHCHECK", "SHELL", "ONBUILD", "MAINTAINER", "WORKDIR")  # fmt: skip


class BuildError(DockyardError):
    """A step failed; the message names the step and, for RUN, the exit code and output's tail.
    Exit status 1, as ``docker build``'s."""

    exit_code = 1


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    explain_cache: bool = False
    dockerfile_name: str = "Dockerfile"
    network: str = "default"  # RUN's network: default (the bridge), none, host
    pull: bool = False  # pull every FROM image, even one the store has
    platform: str = ""  # --platform: this host's only (no emulation)


def _platform_args(wanted: str) -> dict[str, str]:
    host = f"linux/{_ARCH.get(platform.machine(), platform.machine())}"
    target = wanted or host
    if target.split("/")[:2] != host.split("/")[:2]:
        raise BuildError(
            f"building for {target} is not supported: this host is {host} (no emulation)"
        )
    os_, arch, *variant = target.split("/")
    return {"TARGETPLATFORM": target, "TARGETOS": os_, "TARGETARCH": arch,
            "TARGETVARIANT": variant[0] if variant else "", "BUILDPLATFORM": host, "BUILDOS": "linux",
            "BUILDARCH": host.split("/")[1], "BUILDVARIANT": ""}  # fmt: skip


@dataclass
class _State:
    """Where a stage stands: its current image and what the next steps see."""

    image_id: str
    config: dict[str, Any]
    args: dict[str, str] = field(default_factory=dict)  # ARGs declared in this stage, with values
    cmd_set: bool = False  # a CMD in this stage (then ENTRYPOINT keeps it)

    def env(self) -> dict[str, str]:
        out = dict(self.args)
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out


class _StageBuild:
    """One stage built beside the others by this module's own ``Builder`` (a library call,
    not a CLI process): in a forked child where this process runs one thread (two cores
    build at once, as before), in a thread where others already run (a server: forking
    there is unsafe). Each has its own engine object, so its own database connection."""

    def __init__(self, engine: Engine, context_root: str, options: BuildOptions, text: str) -> None:
        args = (engine.root, engine.snapshotter, context_root, options, text)
        threading_mod = sys.modules.get("threading")
        self._error: str | None = None
        self._pid = 0
        self._thread = None
        if threading_mod is None or threading_mod.active_count() == 1:
            self._read, write = os.pipe()
            self._pid = os.fork()
            if self._pid == 0:
                os.close(self._read)
                code = 1
                try:
                    error = _build_stage(*args)
                    os.write(write, (error or "").encode())
                    code = 0 if error is None else 1
                finally:
                    os._exit(code)
            os.close(write)
        else:
            import threading

            def run() -> None:
                self._error = _build_stage(*args)

            self._thread = threading.Thread(target=run, daemon=True)
            self._thread.start()

    def result(self) -> str | None:
        """None once built; else the one-line error."""
        if self._thread is not None:
            self._thread.join()
            return self._error
        chunks = []
        while chunk := os.read(self._read, 65536):
            chunks.append(chunk)
        os.close(self._read)
        _pid, status = os.waitpid(self._pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            return None
        return (
            b"".join(chunks).decode(errors="replace")
            or f"exit status {os.waitstatus_to_exitcode(status)}"
        )


def _build_stage(
    root: str, snapshotter: str, context_root: str, options: BuildOptions, text: str
) -> str | None:
    """Build ``options.target``; None, or why it failed in one line."""
    from dockyard.engine.containers import Engine as EngineImpl

    try:
        engine = EngineImpl(root, snapshotter)
        Builder(engine, BuildContext(context_root, engine.db), options, out=_Discard()).build(text)
        return None
    except (DockyardError, OSError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class Builder:
    def __init__(self, engine: Engine, context: BuildContext, options: BuildOptions,
                 out: TextIO | None = None) -> None:  # fmt: skip
        self.engine = engine
        self.store = engine.images
        self.db = engine.db
        self.context = context
        self.opts = options
        self.out = out or sys.stderr
        self.step_no = 0
        self.used_args: set[str] = set()

    # -- output

    def _say(self, text: str) -> None:
        if not self.opts.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    # -- the build

    @changing(lambda self, *_: self.engine.root)
    def build(self, text: str) -> str:
        parsed = df.parse(text, self.opts.dockerfile_name)
        self.escape = parsed.escape
        # BuildKit's automatic platform ARGs: in the global scope, and in a stage that
        # declares them (``ARG TARGETARCH``)
        meta: dict[str, str] = _platform_args(self.opts.platform)
        for cmd in parsed.meta_args:
            for item in cmd.value:
                name, eq, default = item.partition("=")
                value = self.opts.build_args.get(
                    name, process_word(default, meta, self.escape) if eq else None
                )
                if value is not None:
                    meta[name] = value
                    self.used_args.add(name)
        self.meta = meta
        target = parsed.stages[-1]
        if self.opts.target:
            found = parsed.stage(self.opts.target)
            if found is None:
                raise BuildError(f"failed to reach build target {self.opts.target} in Dockerfile")
            target = found
        needed = self._needed(parsed, target)
        self._parallel(parsed, needed, target, text)
        results: dict[int, str] = {}
        for stage in parsed.stages:
            if stage.index in needed:
                results[stage.index] = self._stage(parsed, stage, results)
        image_id = results[target.index]
        if self.opts.labels:
            cfg = self.store.config(image_id)
            labels = {**((cfg.get("config") or {}).get("Labels") or {}), **self.opts.labels}
            image_id = self._config_image(
                image_id, {**(cfg.get("config") or {}), "Labels": labels}, "LABEL (build)"
            )
        unused = sorted(set(self.opts.build_args) - self.used_args)
        if unused:
            self._say(f"[Warning] One or more build-args {unused} were not consumed")
        self.step_no += 1
        self._say(f"#{self.step_no} writing image {image_id} done")
        for tag in self.opts.tags:
            from dockyard.image.reference import parse

            self.store.tag(image_id, tag)
            self._say(f"#{self.step_no} naming to {parse(tag)} done")
        return image_id

    def _stage_deps(self, parsed: df.Dockerfile, stage: df.Stage) -> set[int]:
        refs = [process_word(stage.base, self.meta, self.escape)]
        refs += [df.flag(c, "from") or "" for c in stage.commands if c.cmd in ("COPY", "ADD")]
        out = set()
        for ref in refs:
            other = parsed.stage(ref) if ref else None
            if other is not None and other.index < stage.index:
                out.add(other.index)
        return out

    def _parallel(
        self, parsed: df.Dockerfile, needed: set[int], target: df.Stage, text: str
    ) -> None:
        """Stages that take from no other stage have nothing to wait for: with two or more of
        them, each is built at once by a build process of its own (same engine, same cache);
        the steps below then find their results in the cache."""
        leaves = [parsed.stages[i] for i in sorted(needed)
                  if i != target.index and not self._stage_deps(parsed, parsed.stages[i])]  # fmt: skip
        if len(leaves) < 2:
            return
        jobs = []
        for stage in leaves:
            self.step_no += 1
            self._say(
                f"#{self.step_no} [{stage.name or f'stage-{stage.index}'}] building in parallel"
            )
            options = replace(
                self.opts, target=stage.name or str(stage.index), quiet=True, tags=[], labels={}
            )
            jobs.append(
                (stage, self.step_no, _StageBuild(self.engine, self.context.root, options, text))
            )
        failed = None
        for stage, no, job in jobs:
            error = job.result()
            if error is not None and failed is None:
                failed = error
            self._say(
                f"#{no} [{stage.name or f'stage-{stage.index}'}] "
                + ("DONE" if error is None else "ERROR")
            )
        if failed:
            raise BuildError(failed)

    def _needed(self, parsed: df.Dockerfile, target: df.Stage) -> set[int]:
        """The target and every stage it takes from (FROM a stage, COPY --from a stage)."""
        needed: set[int] = set()
        todo = [target]
        while todo:
            stage = todo.pop()
            if stage.index in needed:
                continue
            needed.add(stage.index)
            todo += [parsed.stages[i] for i in self._stage_deps(parsed, stage)]
        return needed

    def _stage(self, parsed: df.Dockerfile, stage: df.Stage, results: dict[int, str]) -> str:
        base = process_word(stage.base, self.meta, self.escape)
        total = len(stage.commands) + 1
        label = (stage.name or f"stage-{stage.index}") if len(parsed.stages) > 1 else ""
        self.step_no += 1
        t0 = time.monotonic()
        self._say(f"#{self.step_no} [{label + ' ' if label else ''}1/{total}] FROM {base}")
        source = parsed.stage(base)
        if base.lower() == "scratch":
            image_id = self._scratch()
        elif source is not None and source.index < stage.index:
            image_id = results[source.index]
        else:
            image_id = self._base_image(base)
        self._say(f"#{self.step_no} DONE {time.monotonic() - t0:.1f}s")
        cfg = self.store.config(image_id)
        state = _State(image_id, dict(cfg.get("config") or {}))
        self._parsed = parsed
        self._results = results
        for n, cmd in enumerate(self._onbuild(state) + stage.commands, start=2):
            self.step_no += 1
            head = f"#{self.step_no} [{label + ' ' if label else ''}{n}/{total}] {cmd.cmd} {self._shown(cmd)}"
            self._say(head)
            t0 = time.monotonic()
            try:
                cached = self._step(state, cmd)
            except InvalidArgument as err:
                raise BuildError(
                    f"{self.opts.dockerfile_name}:{cmd.start_line}: {cmd.cmd}: {err}"
                ) from None
            self._say(
                f"#{self.step_no} CACHED"
                if cached
                else f"#{self.step_no} DONE {time.monotonic() - t0:.1f}s"
            )
        return state.image_id

    def _base_image(self, base: str) -> str:
        """FROM an image: the local one, pulled if missing (or always, with ``--pull``)."""
        if not self.opts.pull:
            try:
                return self.store.resolve(base)
            except NotFound:
                pass
        from dockyard.jsonmessage import TextRenderer
        from dockyard.registry.transfer import pull  # 45 ms of imports: only when pulling

        try:
            with TextRenderer(_Prefixed(self, f"#{self.step_no} ")) as progress:  # type: ignore[arg-type]
                return pull(self.store, base, progress=progress, implicit=True)
        except (DockyardError, OSError) as err:
            raise BuildError(f"FROM {base}: {err}") from None

    def _onbuild(self, state: _State) -> list[Any]:
        triggers = state.config.get("OnBuild") or []
        if not triggers:
            return []
        import dockerfile

        state.config = {**state.config, "OnBuild": None}
        return list(dockerfile.parse_string("\n".join(triggers)))

    @staticmethod
    def _shown(cmd: Any) -> str:
        text = cmd.original.split(None, 1)[1] if " " in cmd.original else ""
        return text.split("\n", 1)[0]

    def _scratch(self) -> str:
        cfg = {"architecture": _ARCH.get(platform.machine(), platform.machine()), "os": "linux",
               "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}  # fmt: skip
        return self.store.create_image(cfg, [])

    # -- one step

    def _key(self, state: _State, canonical: str, inputs: dict[str, Any]) -> str:
        raw = json.dumps([state.image_id, canonical, inputs], sort_keys=True)
        return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()

    def _lookup(
        self, state: _State, canonical: str, inputs: dict[str, Any]
    ) -> tuple[str, str | None]:
        """The step's cache key and the image cached under it (None: a miss, or --no-cache)."""
        key = self._key(state, canonical, inputs)
        hit = self._cached(key)
        self._explain(key, state, canonical, inputs, hit is not None)
        return key, hit

    def _cached(self, key: str) -> str | None:
        if self.opts.no_cache:
            return None
        rows = self.db.query("SELECT image_id FROM build_cache WHERE key = ?", (key,))
        if rows:
            try:
                self.store.config(rows[0]["image_id"])
                return rows[0]["image_id"]
            except (NotFound, OSError):
                return None
        return None

    def _remember(
        self, key: str, image_id: str, parent: str, canonical: str, inputs: dict[str, Any]
    ) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO build_cache VALUES (?, ?, ?, ?, ?, ?)",
                      (key, image_id, parent, canonical, json.dumps(inputs), time.time()))  # fmt: skip

    def _explain(
        self, key: str, state: _State, canonical: str, inputs: dict[str, Any], hit: bool
    ) -> None:
        if not self.opts.explain_cache:
            return
        self._say(f"#{self.step_no} cache key {key}")
        if hit:
            return
        rows = self.db.query("SELECT parent, inputs FROM build_cache WHERE instruction = ? AND key != ? "
                             "ORDER BY created DESC LIMIT 1", (canonical, key))  # fmt: skip
        if not rows:
            self._say(f"#{self.step_no} cache miss: this instruction was never built before")
            return
        old_parent, old_inputs = rows[0]["parent"], json.loads(rows[0]["inputs"])
        if old_parent != state.image_id:
            self._say(
                f"#{self.step_no} cache miss: parent image changed: {old_parent[:19]} -> {state.image_id[:19]}"
            )
        for name in sorted(set(old_inputs.get("args", {})) | set(inputs.get("args", {}))):
            old, new = old_inputs.get("args", {}).get(name), inputs.get("args", {}).get(name)
            if old != new:
                self._say(f"#{self.step_no} cache miss: build arg {name}: {old!r} -> {new!r}")
        old_files, new_files = old_inputs.get("files", {}), inputs.get("files", {})
        for path in sorted(set(old_files) | set(new_files)):
            old, new = old_files.get(path), new_files.get(path)
            if old != new:
                self._say(
                    f"#{self.step_no} cache miss: file {path}: {_short(old)} -> {_short(new)}"
                )

    def _step(self, state: _State, cmd: Any) -> bool:
        """Run one instruction on ``state``; True if it came from the cache."""
        kind = cmd.cmd
        env = state.env()
        if kind == "ARG":
            for item in cmd.value:
                name, eq, default = item.partition("=")
                if name in self.opts.build_args:
                    value: str | None = self.opts.build_args[name]
                elif eq:
                    value = process_word(default, env, self.escape)
                else:
                    value = self.meta.get(name)
                self.used_args.add(name)
                if value is not None:
                    state.args[name] = value
            return False
        if kind == "RUN":
            return self._run(state, cmd, env)
        if kind in ("COPY", "ADD"):
            return self._copy(state, cmd, env)
        canonical, config = self._configure(state, cmd, env)
        inputs: dict[str, Any] = {}
        key, hit = self._lookup(state, canonical, inputs)
        was_cached = hit is not None
        if hit is None:
            if kind == "WORKDIR":
                hit = self._workdir_image(state, config, canonical)
            else:
                hit = self._config_image(state.image_id, config, canonical)
            self._remember(key, hit, state.image_id, canonical, inputs)
        state.image_id, state.config = hit, config
        if kind == "CMD":
            state.cmd_set = True
        return was_cached

    # -- config-only instructions

    def _configure(
        self, state: _State, cmd: Any, env: dict[str, str]
    ) -> tuple[str, dict[str, Any]]:
        """(canonical text, new config) for a config-only instruction."""
        kind = cmd.cmd
        cfg = dict(state.config)
        words = list(cmd.value)
        esc = self.escape

        def pairs() -> list[tuple[str, str]]:
            # the parser gives name, value, name, value... for both ENV A=1 and ENV A 1
            if len(words) % 2:
                raise InvalidArgument(f"{kind} names can not be blank")
            return [(process_word(words[i], env, esc), process_word(words[i + 1], env, esc))
                    for i in range(0, len(words), 2)]  # fmt: skip

        if kind == "ENV":
            current = dict(item.partition("=")[::2] for item in cfg.get("Env") or [])
            for name, value in pairs():
                current[name] = value
                env[name] = value
            cfg["Env"] = [f"{k}={v}" for k, v in current.items()]
            text = "ENV " + " ".join(f"{k}={v}" for k, v in pairs())
        elif kind == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for name, value in pairs():
                labels[name] = value
            cfg["Labels"] = labels
            text = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs())
        elif kind == "MAINTAINER":
            text = "MAINTAINER " + " ".join(words)
        elif kind == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for word in words:
                port = process_word(word, env, esc)
                ports[port if "/" in port else f"{port}/tcp"] = {}
            cfg["ExposedPorts"] = ports
            text = "EXPOSE " + " ".join(sorted(ports))
        elif kind in ("CMD", "ENTRYPOINT"):
            value = (
                list(words)
                if cmd.json
                else [*(cfg.get("Shell") or ["/bin/sh", "-c"]), " ".join(words)]
            )
            cfg["Cmd" if kind == "CMD" else "Entrypoint"] = value
            if kind == "ENTRYPOINT" and not state.cmd_set:
                cfg["Cmd"] = None  # ENTRYPOINT resets an inherited CMD, as Docker does
            text = f"{kind} {json.dumps(value)}"
        elif kind == "USER":
            cfg["User"] = process_word(words[0], env, esc)
            text = f"USER {cfg['User']}"
        elif kind == "WORKDIR":
            path = process_word(words[0], env, esc)
            cfg["WorkingDir"] = os.path.normpath(os.path.join(cfg.get("WorkingDir") or "/", path))
            text = f"WORKDIR {cfg['WorkingDir']}"
        elif kind == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for word in words:
                for v in process_words(word, env, esc) if not cmd.json else [word]:
                    vols[v] = {}
            cfg["Volumes"] = vols
            text = "VOLUME " + json.dumps(sorted(vols))
        elif kind == "STOPSIGNAL":
            cfg["StopSignal"] = process_word(words[0], env, esc)
            text = f"STOPSIGNAL {cfg['StopSignal']}"
        elif kind == "SHELL":
            if not cmd.json:
                raise InvalidArgument("SHELL requires the arguments to be in JSON form")
            cfg["Shell"] = list(words)
            text = f"SHELL {json.dumps(words)}"
        elif kind == "ONBUILD":
            trigger = cmd.original.split(None, 1)[1]
            if trigger.split(None, 1)[0].upper() in ("ONBUILD", "FROM", "MAINTAINER"):
                raise InvalidArgument(
                    f"{trigger.split(None, 1)[0].upper()} isn't allowed as an ONBUILD trigger"
                )
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), trigger]
            text = f"ONBUILD {trigger}"
        elif kind == "HEALTHCHECK":
            cfg["Healthcheck"] = self._healthcheck(cmd)
            text = f"HEALTHCHECK {json.dumps(cfg['Healthcheck'], sort_keys=True)}"
        else:
            raise InvalidArgument(f"unknown instruction: {kind}")
        return text, cfg

    def _healthcheck(self, cmd: Any) -> dict[str, Any]:
        words = list(cmd.value)
        if words and words[0].upper() == "NONE":
            return {"Test": ["NONE"]}
        if not words or words[0].upper() != "CMD":
            raise InvalidArgument("HEALTHCHECK must be NONE or CMD ...")
        rest = words[1:]
        test = ["CMD", *rest] if cmd.json else ["CMD-SHELL", " ".join(rest)]
        hc: dict[str, Any] = {"Test": test}
        for name, key in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
        ):
            value = df.flag(cmd, name)
            if value:
                hc[key] = duration_ns(value)
        retries = df.flag(cmd, "retries")
        if retries:
            hc["Retries"] = int(retries)
        return hc

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

    # -- steps with a layer

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

    def _workdir_image(self, state: _State, config: dict[str, Any], created_by: str) -> str:
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

    def _copy(self, state: _State, cmd: Any, env: dict[str, str]) -> bool:
        from dockyard.build import files

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

    def _run(self, state: _State, cmd: Any, env: dict[str, str]) -> bool:
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
            run_env.append(f"PATH={_DEFAULT_PATH}")
        config = {"Cmd": argv, "Entrypoint": [], "Env": run_env, "User": state.config.get("User") or "",
                  "WorkingDir": state.config.get("WorkingDir") or "", "Tty": False, "OpenStdin": False,
                  "AttachStdout": True, "AttachStderr": True, "Labels": {}, "Hostname": "buildkitsandbox"}  # fmt: skip
        host = {"AutoRemove": False, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                "NetworkMode": df.flag(cmd, "network") or self.opts.network,
                "LogConfig": {"Type": "json-file", "Config": {}}, "Runtime": "dockyard-runtime",
                "Binds": binds, "MountSpecs": [], "Tmpfs": {}, "CapAdd": [], "CapDrop": [], "SecurityOpt": [],
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

    def _run_mounts(self, cmd: Any, state: _State) -> list[str]:
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


class _Prefixed:
    """A text stream that prints each line as a progress line of the current step."""

    def __init__(self, builder: Builder, prefix: str) -> None:
        self.builder, self.prefix = builder, prefix

    def write(self, text: str) -> None:
        for line in text.splitlines():
            self.builder._say(self.prefix + line)

    def flush(self) -> None:
        pass


def _short(value: str | None) -> str:
    if value is None:
        return "(absent)"
    return value.split()[-1][:19] if "sha256:" in value else value
