"""Docker's command-line grammar, small and quick to import.

The decorators look like click's (``command``, ``group``, ``option``,
``argument``, ``pass_context``), but the parsing is Docker's (pflag): ``-it``
clusters, ``-p80:80`` and ``--name=x``, ``--rm=false``, ``--`` ends the flags,
flags after arguments except where a command stops at its first argument
(``run IMAGE ls -l`` passes ``-l`` on), and Docker's messages for what goes
wrong (``unknown flag: --x``, ``"dockyard rm" requires at least 1 argument.``).
click took 30-40 ms of every command's start-up on this machine; this module
imports nothing beyond ``os`` and ``sys``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "UNPROCESSED",
    "Abort",
    "Choice",
    "Command",
    "Context",
    "Exit",
    "Group",
    "NoSuchOption",
    "UsageError",
    "argument",
    "command",
    "confirm",
    "echo",
    "group",
    "option",
    "pass_context",
    "version_option",
]


class UsageError(Exception):
    """Bad command line: one line, exit 125."""


class NoSuchOption(UsageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown flag: {name}")
        self.option_name = name


class Exit(Exception):
    def __init__(self, code: int = 0) -> None:
        super().__init__(code)
        self.exit_code = code


class Abort(Exception):
    """The user said no at a prompt (or closed its input)."""


def UNPROCESSED(value: str) -> str:
    return value


class Choice:
    def __init__(self, choices: list[str]) -> None:
        self.choices = list(choices)

    def __call__(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return value


_TRUE = ("1", "t", "true", "yes", "y", "on")
_FALSE = ("0", "f", "false", "no", "n", "off")


def _parse_bool(value: str) -> bool:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("not a boolean")


class Option:
    def __init__(self, decls: tuple[str, ...], attrs: dict[str, Any]) -> None:
        self.shorts: list[str] = []
        self.longs: list[str] = []
        self.negatives: list[str] = []
        self.dest = ""
        for decl in decls:
            if "/" in decl:
                yes, no = decl.split("/", 1)
                self.longs.append(yes[2:])
                self.negatives.append(no[2:])
            elif decl.startswith("--"):
                self.longs.append(decl[2:])
            elif decl.startswith("-"):
                self.shorts.append(decl[1:])
            else:
                self.dest = decl
        if not self.dest:
            self.dest = (self.longs or self.shorts)[0].replace("-", "_")
        self.is_flag = bool(attrs.get("is_flag")) or bool(self.negatives)
        self.multiple = bool(attrs.get("multiple"))
        self.type: Callable[[str], Any] | None = attrs.get("type")
        if self.type is bool:
            self.type = _parse_bool
        self.required = bool(attrs.get("required"))
        self.envvar: str | None = attrs.get("envvar")
        self.help: str = attrs.get("help") or ""
        self.show_default = bool(attrs.get("show_default"))
        self.hidden = bool(attrs.get("hidden"))
        default = attrs.get("default")
        if default is None:
            default = False if self.is_flag else (() if self.multiple else None)
        self.default = default

    def label(self) -> str:
        names = [f"-{s}" for s in self.shorts] + [f"--{n}" for n in self.longs]
        return ", ".join(names)

    def convert(self, raw: str, given_as: str) -> Any:
        if self.type is None:
            return raw
        try:
            return self.type(raw)
        except ValueError as err:
            kind = {int: "not an integer", float: "not a number"}.get(self.type, str(err))  # type: ignore[call-overload]
            raise UsageError(f'invalid argument "{raw}" for "{given_as}" flag: {kind}') from None


class Argument:
    def __init__(self, name: str, nargs: int, required: bool | None, type_: Any) -> None:
        self.name = name
        self.nargs = nargs
        self.required = (nargs == 1) if required is None else required
        self.type = type_

    def metavar(self) -> str:
        word = self.name.upper()
        if self.nargs == -1:
            text = f"{word} [{word}...]" if self.required else f"[{word}...]"
        else:
            text = word if self.required else f"[{word}]"
        return text


def _attach_param(f: Any, param: Option | Argument) -> Any:
    if isinstance(f, Command):
        f.params.insert(0, param)
    else:
        f.__dict__.setdefault("__flags_params__", []).insert(0, param)
    return f


def option(*decls: str, **attrs: Any) -> Callable[[Any], Any]:
    return lambda f: _attach_param(f, Option(decls, attrs))


def argument(
    name: str, nargs: int = 1, required: bool | None = None, type: Any = None
) -> Callable[[Any], Any]:
    return lambda f: _attach_param(f, Argument(name, nargs, required, type))


def pass_context(f: Any) -> Any:
    f.__flags_pass_context__ = True
    return f


def version_option(version: str, *decls: str, message: str) -> Callable[[Any], Any]:
    def add(f: Any) -> Any:
        opt = Option(decls, {"is_flag": True, "help": "Print version information and quit"})
        opt.dest = "__version__"
        opt.version_text = message % {"version": version}  # type: ignore[attr-defined]
        return _attach_param(f, opt)

    return add


class Context:
    def __init__(self, command: Command, parent: Context | None, info_name: str) -> None:
        self.command = command
        self.parent = parent
        self.info_name = info_name
        self.obj: Any = parent.obj if parent else None
        self.invoked_subcommand: str | None = None
        self.params: dict[str, Any] = {}

    @property
    def command_path(self) -> str:
        return f"{self.parent.command_path} {self.info_name}" if self.parent else self.info_name

    def find_root(self) -> Context:
        ctx = self
        while ctx.parent is not None:
            ctx = ctx.parent
        return ctx

    def exit(self, code: int = 0) -> None:
        raise Exit(code)

    def get_help(self) -> str:
        return self.command.help_text(self)


class Command:
    def __init__(self, name: str, callback: Callable[..., Any], settings: dict[str, Any]) -> None:
        self.name = name
        self.callback = callback
        self.params: list[Option | Argument] = list(getattr(callback, "__flags_params__", []))
        self.pass_context = bool(getattr(callback, "__flags_pass_context__", False))
        self.interspersed = settings.get("allow_interspersed_args", True)
        doc = (callback.__doc__ or "").strip()
        self.help = doc.splitlines()[0].rstrip(".") if doc else ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.callback(*args, **kwargs)

    # --- parsing

    def _options(self) -> list[Option]:
        return [p for p in self.params if isinstance(p, Option)]

    def _wants_help(self, arg: str) -> bool:
        if arg == "--help":
            return True
        return arg == "-h" and not any("h" in o.shorts for o in self._options())

    def parse(self, ctx: Context, args: list[str]) -> list[str]:
        """Fill ctx.params from args; return what is left for a subcommand (groups only)."""
        opts = self._options()
        longs = {n: o for o in opts for n in o.longs}
        negs = {n: o for o in opts for n in o.negatives}
        shorts = {s: o for o in opts for s in o.shorts}
        values: dict[str, Any] = {}
        positionals: list[str] = []
        rest: list[str] = []
        stop_at_first = isinstance(self, Group) or not self.interspersed

        def store(opt: Option, value: Any) -> None:
            if opt.multiple:
                values.setdefault(opt.dest, []).append(value)
            else:
                values[opt.dest] = value

        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if arg == "--":
                positionals.extend(args[i:])
                break
            if self._wants_help(arg):
                echo(self.help_text(ctx))
                raise Exit(0)
            if arg.startswith("--") and len(arg) > 2:
                name, eq, raw = arg[2:].partition("=")
                opt = longs.get(name) or negs.get(name)
                if opt is None:
                    raise NoSuchOption(f"--{name}")
                if opt.is_flag:
                    try:
                        flag = _parse_bool(raw) if eq else True
                    except ValueError:
                        raise UsageError(
                            f'invalid argument "{raw}" for "--{name}" flag: not a boolean'
                        ) from None
                    store(opt, flag if name in opt.longs else not flag)
                    continue
                if not eq:
                    if i >= len(args):
                        raise UsageError(f"flag needs an argument: --{name}")
                    raw = args[i]
                    i += 1
                store(opt, opt.convert(raw, f"--{name}"))
                continue
            if arg.startswith("-") and len(arg) > 1:
                j = 1
                while j < len(arg):
                    ch = arg[j]
                    opt = shorts.get(ch)
                    if opt is None:
                        if ch == "h" and self._wants_help("-h"):
                            echo(self.help_text(ctx))
                            raise Exit(0)
                        raise UsageError(f"unknown shorthand flag: '{ch}' in {arg}")
                    j += 1
                    if opt.is_flag:
                        if arg[j : j + 1] == "=":
                            store(opt, _parse_bool(arg[j + 1 :]))
                            break
                        store(opt, True)
                        continue
                    raw = arg[j:].removeprefix("=")
                    if not raw:
                        if i >= len(args):
                            raise UsageError(f"flag needs an argument: '{ch}' in -{ch}")
                        raw = args[i]
                        i += 1
                    store(opt, opt.convert(raw, f"-{ch}"))
                    break
                continue
            positionals.append(arg)
            if stop_at_first:
                if isinstance(self, Group):
                    rest = args[i:]
                else:
                    positionals.extend(args[i:])
                break
        for opt in opts:
            if opt.dest == "__version__":
                if values.get("__version__"):
                    echo(opt.version_text)  # type: ignore[attr-defined]
                    raise Exit(0)
                continue
            if opt.dest in values:
                value = values[opt.dest]
                ctx.params[opt.dest] = tuple(value) if opt.multiple else value
            elif opt.envvar and os.environ.get(opt.envvar):
                ctx.params[opt.dest] = opt.convert(os.environ[opt.envvar], opt.envvar)
            else:
                ctx.params[opt.dest] = opt.default
        if isinstance(self, Group):
            return positionals + rest
        self._bind_arguments(ctx, positionals)
        return []

    def _bind_arguments(self, ctx: Context, positionals: list[str]) -> None:
        arguments = [p for p in self.params if isinstance(p, Argument)]
        variadic = next((a for a in arguments if a.nargs == -1), None)
        minimum = sum(1 for a in arguments if a.required)
        maximum = None if variadic else len(arguments)
        count = len(positionals)
        if count < minimum or (maximum is not None and count > maximum):
            if minimum == maximum:
                rule = f"requires exactly {minimum}"
            elif count < minimum:
                rule = f"requires at least {minimum}"
            else:
                rule = f"accepts at most {maximum}"
            plural = "s" if (minimum if count < minimum else maximum) != 1 else ""
            raise UsageError(f'"{ctx.command_path}" {rule} argument{plural}.'
                             f" See '{ctx.command_path} --help'")  # fmt: skip
        spare = count - minimum  # for optional arguments and the variadic one, left to right
        pos = 0
        for idx, a in enumerate(arguments):
            convert = a.type or UNPROCESSED
            if a.nargs == -1:
                after = sum(1 for b in arguments[idx + 1 :] if b.required)
                take = count - pos - after
                ctx.params[a.name] = tuple(convert(x) for x in positionals[pos : pos + take])
                spare = 0
                pos += take
            elif a.required or spare > 0:
                spare -= 0 if a.required else 1
                ctx.params[a.name] = convert(positionals[pos])
                pos += 1
            else:
                ctx.params[a.name] = None

    # --- running

    def invoke(self, ctx: Context) -> Any:
        if self.pass_context:
            return self.callback(ctx, **ctx.params)
        return self.callback(**ctx.params)

    def main(self, args: list[str], prog_name: str) -> Any:
        ctx = Context(self, None, prog_name)
        return self.run(ctx, args)

    def run(self, ctx: Context, args: list[str]) -> Any:
        self.parse(ctx, args)
        return self.invoke(ctx)

    # --- help

    def usage(self, ctx: Context) -> str:
        words = [ctx.command_path]
        if self._options():
            words.append("[OPTIONS]")
        words += [a.metavar() for a in self.params if isinstance(a, Argument)]
        return " ".join(words)

    def _options_help(self) -> list[str]:
        rows = []
        for o in self._options():
            if o.hidden:
                continue
            label = o.label()
            if not o.shorts:
                label = "    " + label
            if not o.is_flag:
                label += " " + ("list" if o.multiple else _type_word(o.type))
            text = o.help
            if o.show_default and o.default not in (None, False, ()):
                text += f' (default "{o.default}")'
            rows.append((label, text))
        rows.append(("    --help", "Print usage"))
        width = max(len(label) for label, _ in rows)
        return [f"  {label.ljust(width)}   {text}".rstrip() for label, text in rows]

    def help_text(self, ctx: Context) -> str:
        lines = [f"Usage:  {self.usage(ctx)}", "", self.help, "", "Options:", *self._options_help()]
        return "\n".join(lines)


def _type_word(kind: Any) -> str:
    if kind is int:
        return "int"
    if kind is float:
        return "decimal"
    return "string"


class LazyCommand:
    """A command whose module is imported only when it runs (or shows its help): the
    commands off ``run``'s path cost its start-up nothing. ``load`` returns the command."""

    def __init__(self, name: str, help_text: str, load: Callable[[], Command]) -> None:
        self.name, self.help, self._load = name, help_text, load

    def run(self, ctx: Context, args: list[str]) -> Any:
        real = self._load()
        ctx.command = real
        return real.run(ctx, args)


class Group(Command):
    def __init__(self, name: str, callback: Callable[..., Any], settings: dict[str, Any],
                 invoke_without_command: bool) -> None:  # fmt: skip
        super().__init__(name, callback, settings)
        self.commands: dict[str, Command] = {}
        self.invoke_without_command = invoke_without_command
        self._deferred: list[Callable[[], None]] = []

    def add_command(self, cmd: Command | LazyCommand, name: str | None = None) -> None:
        self.commands[name or cmd.name] = cmd  # type: ignore[assignment]

    def defer(self, register: Callable[[], None]) -> None:
        """Commands ``register`` adds once a word is not among those here (registrations
        run in turn until it is), or help lists them all: building every command's options
        costs each ``run`` a few ms."""
        self._deferred.append(register)

    def _complete(self) -> None:
        while self._deferred:
            self._deferred.pop(0)()

    def subcommand(self, name: str) -> Command | None:
        while name not in self.commands and self._deferred:
            self._deferred.pop(0)()
        return self.commands.get(name)

    def command(self, name: str | None = None, **settings: Any) -> Callable[[Any], Command]:
        def make(f: Any) -> Command:
            cmd = command(name, **settings)(f)
            self.add_command(cmd)
            return cmd

        return make

    def run(self, ctx: Context, args: list[str]) -> Any:
        rest = self.parse(ctx, args)
        if not rest:
            if self.invoke_without_command:
                return self.invoke(ctx)
            echo(self.help_text(ctx))
            return 0
        name, rest = rest[0], rest[1:]
        sub = self.subcommand(name)
        if sub is None:
            raise UsageError(f"'{name}' is not a {ctx.command_path} command, "
                             f"see '{ctx.command_path} --help'")  # fmt: skip
        ctx.invoked_subcommand = name
        self.invoke(ctx)
        return sub.run(Context(sub, ctx, name), rest)

    def usage(self, ctx: Context) -> str:
        return f"{ctx.command_path} [OPTIONS] COMMAND"

    def help_text(self, ctx: Context) -> str:
        self._complete()
        lines = [f"Usage:  {self.usage(ctx)}", "", self.help, ""]
        if self._options():
            lines += ["Options:", *self._options_help(), ""]
        width = max((len(n) for n in self.commands), default=0)
        lines.append("Commands:")
        lines += [f"  {n.ljust(width)}   {c.help}" for n, c in sorted(self.commands.items())]
        lines += ["", f"Run '{ctx.command_path} COMMAND --help' for more information on a command."]
        return "\n".join(lines)


def command(name: str | None = None, context_settings: dict[str, Any] | None = None,
            **_: Any) -> Callable[[Any], Command]:  # fmt: skip
    def make(f: Any) -> Command:
        return Command(name or f.__name__.replace("_", "-"), f, context_settings or {})

    return make


def group(name: str | None = None, context_settings: dict[str, Any] | None = None,
          invoke_without_command: bool = False, **_: Any) -> Callable[[Any], Group]:  # fmt: skip
    def make(f: Any) -> Group:
        return Group(name or f.__name__, f, context_settings or {}, invoke_without_command)

    return make


def echo(message: Any = "", nl: bool = True, err: bool = False) -> None:
    out = sys.stderr if err else sys.stdout
    if isinstance(message, bytes):
        out.flush()
        out.buffer.write(message + (b"\n" if nl else b""))
        out.buffer.flush()
        return
    out.write(f"{message}\n" if nl else str(message))
    out.flush()


def confirm(text: str, default: bool = False) -> bool:
    sys.stdout.write(f"{text} [{'Y/n' if default else 'y/N'}]: ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        raise Abort()
    answer = line.strip().lower()
    if not answer:
        return default
    return answer in ("y", "yes")
