"""JSON for the runtime's start-up path, straight from the C accelerator.

``import json`` pulls in ``re`` (about 5 ms of a container start); the
``_json`` C module alone does the same parsing and encoding. Output equals
``json.dumps(obj, separators=(",", ":"))`` for the types the runtime writes.
"""

from __future__ import annotations

try:
    import _json as _c
except ImportError:  # pragma: no cover - CPython always has it
    _c = None

__all__ = ["dump", "dumps", "load", "loads"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO


def _nan(name: str) -> float:
    return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_nan)
    memo: dict[str, str] = {}


_scanner = None


def loads(text: str | bytes) -> object:
    if _c is None:
        import json

        return json.loads(text)
    if isinstance(text, bytes):
        text = text.decode()
    global _scanner
    if _scanner is None:
        _scanner = _c.make_scanner(_Context())  # once: making one costs more than a small parse
    scan = _scanner
    end = len(text)
    i = 0
    while i < end and text[i] in " \t\n\r":
        i += 1
    try:
        obj, pos = scan(text, i)
    except StopIteration as err:
        raise ValueError(f"invalid JSON at character {err.value}") from None
    except (ValueError, SystemError):
        # malformed input: the accelerator, run without the json package, may not be able
        # to build its error (SystemError); the standard library's parser names the fault
        import json

        return json.loads(text)
    while pos < end and text[pos] in " \t\n\r":
        pos += 1
    if pos != end:
        raise ValueError(f"extra data after JSON at character {pos}")
    return obj


def _default(obj: object) -> object:
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: object, indent: int | None = None, sort_keys: bool = False) -> str:
    """Compact JSON (``separators=(",", ":")``), or with ``indent`` the layout of
    ``json.dumps(obj, indent=indent)``; ``sort_keys`` as json's."""
    if _c is None:
        import json

        return json.dumps(obj, indent=indent, sort_keys=sort_keys,
                          separators=None if indent else (",", ":"))  # fmt: skip
    if indent is not None:
        return _pretty(obj, indent, 0, sort_keys)
    encoder = _c.make_encoder(
        {}, _default, _c.encode_basestring_ascii, None, ":", ",", sort_keys, False, True
    )
    return "".join(encoder(obj, 0))


def dump(obj: object, f: TextIO, indent: int | None = None) -> None:
    f.write(dumps(obj, indent))


def load(f: TextIO) -> object:
    return loads(f.read())


def _pretty(obj: object, indent: int, level: int, sort_keys: bool = False) -> str:
    # The C encoder has no indentation; this covers what the runtime prints.
    pad = "\n" + " " * (indent * (level + 1))
    end = "\n" + " " * (indent * level)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        pairs = sorted(obj.items()) if sort_keys else obj.items()
        items = (f"{_c.encode_basestring_ascii(str(k))}: {_pretty(v, indent, level + 1, sort_keys)}"
                 for k, v in pairs)  # fmt: skip
        return "{" + pad + ("," + pad).join(items) + end + "}"
    if isinstance(obj, list | tuple):
        if not obj:
            return "[]"
        inner = ("," + pad).join(_pretty(v, indent, level + 1, sort_keys) for v in obj)
        return "[" + pad + inner + end + "]"
    return dumps(obj)
