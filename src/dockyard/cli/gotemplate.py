"""The part of Go's text/template that Docker's ``--format`` flags are used with.

``docker inspect -f '{{.State.Status}}'``, ``docker ps --format '{{.Names}}\\t{{.Status}}'``
and ``table`` formats are how scripts read Docker's output, so the same templates give
the same text here: fields (``.A.B``, missing map keys print ``<no value>``), pipelines
(``|``), ``range``/``if``/``with`` with ``else``, ``{{-``/``-}}`` trimming, string and
number literals, and the functions Docker adds to Go's: ``json``, ``join``, ``split``,
``lower``, ``upper``, ``title``, ``truncate``, ``pad``, ``println``, with Go's ``index``,
``len``, ``printf``, ``print``, ``eq``, ``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``not``,
``and``, ``or``. Values print as Go prints them (``map[a:1 b:2]``, ``[x y]``, ``true``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Template", "TemplateError", "go_string", "prepare", "render"]


class TemplateError(ValueError):
    pass


_NO_VALUE = object()


def go_string(value: Any) -> str:
    """``fmt.Sprint`` of a JSON-shaped value."""
    if value is _NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_string(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    return str(value)


def prepare(fmt: str) -> tuple[bool, str]:
    """Docker's pre-processing of a ``--format``: (whether it is a ``table``, the template
    with the prefix gone and ``\\t``/``\\n`` written as tab and newline)."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table") :]
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, fmt


# -- lexing: text and actions


def _split(src: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", s)] with ``{{-``/``-}}`` whitespace trimming applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = src.find("{{", pos)
        if start < 0:
            out.append(("text", src[pos:]))
            return out
        text = src[pos:start]
        inner_start = start + 2
        if src.startswith("- ", inner_start) or src.startswith("-\t", inner_start):
            text = text.rstrip()
            inner_start += 1
        end = src.find("}}", inner_start)
        if end < 0:
            raise TemplateError("unclosed action")
        inner_end = end
        after = end + 2
        if src[inner_end - 2 : inner_end] in (" -", "\t-"):
            inner_end -= 1
            rest = src[after:]
            after += len(rest) - len(rest.lstrip())
        out.append(("text", text))
        out.append(("action", src[inner_start:inner_end].strip()))
        pos = after


def _tokens(action: str) -> list[str]:
    toks: list[str] = []
    i = 0
    while i < len(action):
        ch = action[i]
        if ch.isspace():
            i += 1
        elif ch in "|()":
            toks.append(ch)
            i += 1
        elif ch in '"`':
            j = i + 1
            while j < len(action) and action[j] != ch:
                j += 2 if ch == '"' and action[j] == "\\" else 1
            if j >= len(action):
                raise TemplateError(f"unterminated string in {{{{{action}}}}}")
            toks.append(action[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < len(action) and not action[j].isspace() and action[j] not in "|()":
                j += 1
            toks.append(action[i:j])
            i = j
    return toks


# -- parsing into a tree


class _Node:
    __slots__ = ("alt", "body", "declare", "kind", "pipe", "text")

    def __init__(self, kind: str, toks: list[str] | None = None, text: str = "") -> None:
        self.kind, self.text = kind, text
        self.declare: list[str] = []  # {{range $k, $v := ...}}, {{$x := ...}}
        if toks is not None and ":=" in toks:
            at = toks.index(":=")
            self.declare = [t.rstrip(",") for t in toks[:at] if t != ","]
            toks = toks[at + 1 :]
        self.pipe = _pipe(toks)[0] if toks is not None else None
        self.body: list[_Node] = []
        self.alt: list[_Node] = []


def _parse(parts: list[tuple[str, str]]) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    for kind, value in parts:
        target = stack[-1][1]
        if kind == "text":
            if value:
                target.append(_Node("text", text=value))
            continue
        if value.startswith("/*"):
            continue  # a comment
        word = value.split(None, 1)[0] if value else ""
        if word in ("range", "if", "with"):
            node = _Node(word, _tokens(value[len(word) :]))
            target.append(node)
            stack.append((node, node.body))
        elif word == "else":
            block = stack[-1][0]
            if block is None:
                raise TemplateError("{{else}} outside range/if/with")
            stack[-1] = (block, block.alt)
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError("unexpected {{end}}")
            stack.pop()
        else:
            target.append(_Node("action", _tokens(value)))
    if len(stack) != 1:
        raise TemplateError("unexpected EOF: a range, if or with has no {{end}}")
    return root


# -- evaluation


def _truthy(value: Any) -> bool:
    return value not in (None, _NO_VALUE, False, 0, "") and not (
        isinstance(value, (list, dict, tuple)) and not value
    )


def _field(value: Any, path: str) -> Any:
    for name in path.split(".")[1:]:
        if not name:
            continue
        if isinstance(value, dict):
            value = value.get(name, _NO_VALUE)
        elif value is _NO_VALUE or value is None:
            return _NO_VALUE
        else:
            raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")
    return value


def _printf(fmt: str, *args: Any) -> str:
    out, i, n = [], 0, 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%" or i + 1 >= len(fmt):
            out.append(ch)
            i += 1
            continue
        verb = fmt[i + 1]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        arg = args[n] if n < len(args) else _NO_VALUE
        n += 1
        if verb == "q":
            out.append('"' + go_string(arg).replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif verb == "d" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
            out.append(str(int(arg)))
        else:
            out.append(go_string(arg))
    return "".join(out)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, _NO_VALUE)
        elif isinstance(value, (list, tuple)) and isinstance(key, int):
            value = value[key]
        else:
            raise TemplateError(f"can't index item of type {type(value).__name__}")
    return value


def _json(value: Any) -> str:
    from dockyard import _json as json

    return json.dumps(None if value is _NO_VALUE else value)


def _truncate(value: Any, n: int) -> str:
    text = go_string(value)
    return text[:n]


_FUNCS: dict[str, Any] = {
    "json": _json,
    "index": _index,
    "len": lambda v: len(v),
    "join": lambda items, sep: sep.join(go_string(i) for i in items),
    "split": lambda text, sep: text.split(sep),
    "lower": lambda v: go_string(v).lower(),
    "upper": lambda v: go_string(v).upper(),
    "title": lambda v: go_string(v).title(),
    "truncate": _truncate,
    "pad": lambda v, left, right: " " * left + go_string(v) + " " * right,
    "print": lambda *a: "".join(go_string(v) for v in a),
    "println": lambda *a: " ".join(go_string(v) for v in a) + "\n",
    "printf": _printf,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "not": lambda v: not _truthy(v),
    "and": lambda *a: next((v for v in a if not _truthy(v)), a[-1]),
    "or": lambda *a: next((v for v in a if _truthy(v)), a[-1]),
}


def _literal(tok: str, dot: Any, names: dict[str, Any]) -> Any:
    if tok == ".":
        return dot
    if tok.startswith("$"):
        name, _, path = tok.partition(".")
        if name not in names:
            raise TemplateError(f"undefined variable: {name}")
        return _field(names[name], "." + path) if path else names[name]
    if tok.startswith("."):
        return _field(dot, tok)
    if tok.startswith('"'):
        from dockyard import _json as json

        return json.loads(tok)
    if tok.startswith("`"):
        return tok[1:-1]
    if tok in ("true", "false"):
        return tok == "true"
    if tok == "nil":
        return None
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        raise TemplateError(f'function "{tok}" not defined') from None


_NO_ARG = object()


def _pipe(toks: list[str], i: int = 0, nested: bool = False) -> tuple[list[list[Any]], int]:
    """Tokens as a pipeline: commands (``|``-separated) of arguments, an argument a token or
    a parenthesised pipeline of its own."""
    commands: list[list[Any]] = [[]]
    while i < len(toks):
        tok = toks[i]
        if tok == ")":
            if not nested:
                raise TemplateError("unexpected )")
            return commands, i + 1
        if tok == "(":
            sub, i = _pipe(toks, i + 1, nested=True)
            commands[-1].append(sub)
            continue
        if tok == "|":
            commands.append([])
        else:
            commands[-1].append(tok)
        i += 1
    if nested:
        raise TemplateError("unclosed (")
    if any(not c for c in commands):
        raise TemplateError("missing value for command")
    return commands, i


def _arg(arg: Any, dot: Any, names: dict[str, Any]) -> Any:
    return _evaluate(arg, dot, names) if isinstance(arg, list) else _literal(arg, dot, names)


def _command(command: list[Any], dot: Any, piped: Any, names: dict[str, Any]) -> Any:
    head, args = command[0], [_arg(a, dot, names) for a in command[1:]]
    if piped is not _NO_ARG:
        args.append(piped)
    if isinstance(head, str) and head in _FUNCS:
        try:
            return _FUNCS[head](*args)
        except TemplateError:
            raise
        except Exception as err:  # wrong argument count or types, as Go reports them
            raise TemplateError(f"error calling {head}: {err}") from None
    value = _arg(head, dot, names)
    if callable(value):  # a method of the row, as Docker's {{.Label "key"}}
        return value(*args)
    if args:
        raise TemplateError(f"{head} is not a function: it takes no arguments")
    return value


def _evaluate(pipeline: list[list[Any]], dot: Any, names: dict[str, Any]) -> Any:
    value: Any = _NO_ARG
    for command in pipeline:
        value = _command(command, dot, value, names)
    return value


def _execute(nodes: list[_Node], dot: Any, out: list[str], names: dict[str, Any]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
            continue
        assert node.pipe is not None
        value = _evaluate(node.pipe, dot, names)
        if node.kind == "action":
            if not node.declare:
                out.append(go_string(value))
            else:
                names[node.declare[-1]] = value  # {{$x := ...}} prints nothing
        elif node.kind == "range":
            if isinstance(value, dict):
                pairs = [(k, value[k]) for k in sorted(value)]  # Go ranges over sorted keys
            elif isinstance(value, (list, tuple)):
                pairs = list(enumerate(value))
            else:
                pairs = []
            for key, item in pairs:
                scope = dict(names)
                if len(node.declare) == 2:
                    scope[node.declare[0]], scope[node.declare[1]] = key, item
                elif node.declare:
                    scope[node.declare[0]] = item
                _execute(node.body, item, out, scope)
            if not pairs:
                _execute(node.alt, dot, out, names)
        elif _truthy(value):
            _execute(node.body, value if node.kind == "with" else dot, out, names)
        else:
            _execute(node.alt, dot, out, names)


class Template:
    """A parsed template, executed once per value."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = _parse(_split(source))

    def execute(self, data: Any) -> str:
        out: list[str] = []
        _execute(self.nodes, data, out, {"$": data})
        return "".join(out)


def render(source: str, data: Any) -> str:
    return Template(source).execute(data)
