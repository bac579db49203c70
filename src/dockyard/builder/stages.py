"""``dockyard build``'s driver: a Dockerfile's stages, step by step, with Docker's cache rules.

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

The steps live beside this module: ``configsteps`` (config-only instructions), ``layersteps``
(COPY/ADD, RUN, WORKDIR), ``cachekeys`` (keys, lookups, ``--explain-cache``); this one holds
the stage graph (which stages the target needs, which build at once) and the step loop.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

from dockyard.builder import dockerfile as df
from dockyard.builder.configsteps import configure
from dockyard.builder.context import BuildContext
from dockyard.builder.expand import process_word
from dockyard.builder.layersteps import LayerSteps
from dockyard.builder.options import BuildError, BuildOptions, StageState, platform_args
from dockyard.busy import changing
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.platforms import host_arch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from dockyard.engine.containers import Engine

__all__ = ["BuildError", "BuildOptions", "Builder"]


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


class Builder(LayerSteps):
    """Builds a Dockerfile's target through the engine: ``Builder(engine, context, options).build(text)``
    returns the image ID."""

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
        meta: dict[str, str] = platform_args(self.opts.platform)
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
        state = StageState(image_id, dict(cfg.get("config") or {}))
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

    def _onbuild(self, state: StageState) -> list[Any]:
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
        cfg = {"architecture": host_arch(), "os": "linux",
               "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}  # fmt: skip
        return self.store.create_image(cfg, [])

    def _step(self, state: StageState, cmd: Any) -> bool:
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
        canonical, config = configure(state, cmd, env, self.escape)
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


class _Prefixed:
    """A text stream that prints each line as a progress line of the current step."""

    def __init__(self, builder: Builder, prefix: str) -> None:
        self.builder, self.prefix = builder, prefix

    def write(self, text: str) -> None:
        for line in text.splitlines():
            self.builder._say(self.prefix + line)

    def flush(self) -> None:
        pass
