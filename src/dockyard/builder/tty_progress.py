"""``build --progress tty``: BuildKit's live view, drawn from the plain progress lines.

The builder writes one plain log (``#N [i/n] INSTRUCTION``, ``#N <secs> output``,
``#N CACHED``, ``#N DONE 0.4s``); this stream reads it line by line and keeps a
live screen (rich) of it instead: a ``[+] Building`` header with the elapsed time
and steps done, one ``=>`` line per step with its time or ``CACHED``, and under
the running step its last output lines, folded away once it is done. What is
printed at the end is the whole list, as BuildKit leaves it.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = ["TtyProgress"]

_TAIL = 6  # output lines shown under the running step, as BuildKit


class _Step:
    __slots__ = ("done", "output", "started", "state", "title")

    def __init__(self, title: str) -> None:
        self.title = title
        self.state = "running"  # running | cached | done
        self.started = time.monotonic()
        self.done = 0.0
        self.output: list[str] = []


class TtyProgress:
    """A text stream for the builder's plain lines that draws them as a live view."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out, force_terminal=True, highlight=False)
        self.started = time.monotonic()
        self.steps: dict[str, _Step] = {}
        self.notes: list[str] = []
        self._partial = ""
        self._live: Any = Live(self._render(), console=self.console, refresh_per_second=8,
                               get_renderable=self._render, transient=False)  # fmt: skip
        self._live.start()

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def _line(self, line: str) -> None:
        if not line.startswith("#") or " " not in line:
            self.notes.append(line)
            return
        number, rest = line[1:].split(" ", 1)
        step = self.steps.get(number)
        if step is None:
            if rest.startswith("writing image"):  # the export, shown as BuildKit shows it
                step = self.steps[number] = _Step("exporting to image")
                step.output.append(rest)
                step.state = "done"
            else:
                self.steps[number] = _Step(rest)
            return
        if rest == "CACHED":
            step.state = "cached"
        elif rest.startswith("DONE "):
            step.state, step.done = "done", time.monotonic() - step.started
        elif rest.endswith(" done") and rest.startswith(("writing image", "naming to")):
            step.output.append(rest)
            step.state, step.done = "done", time.monotonic() - step.started
        else:
            head, _, text = rest.partition(" ")
            step.output.append(text if head.replace(".", "", 1).isdigit() else rest)

    def _render(self) -> Any:
        from rich.text import Text

        now = time.monotonic()
        finished = sum(1 for s in self.steps.values() if s.state != "running")
        out = Text()
        state = "FINISHED" if self.steps and finished == len(self.steps) else ""
        out.append(f"[+] Building {now - self.started:.1f}s ({finished}/{len(self.steps)}) {state}\n",
                   style="bold blue" if state else "bold")  # fmt: skip
        for step in self.steps.values():
            if step.state == "cached":
                out.append(f" => CACHED {step.title}\n", style="blue")
            elif step.state == "done":
                out.append(f" => {step.title:<70} {step.done:5.1f}s\n", style="blue")
                if step.title == "exporting to image":
                    for text in step.output:
                        out.append(f" => => {text}\n", style="blue")
            else:
                out.append(f" => {step.title:<70} {now - step.started:5.1f}s\n")
                for text in step.output[-_TAIL:]:
                    out.append(f" => => # {text}\n", style="dim")
        for note in self.notes:
            out.append(note + "\n", style="yellow")
        return out

    def close(self) -> None:
        self._live.update(self._render(), refresh=True)
        self._live.stop()
