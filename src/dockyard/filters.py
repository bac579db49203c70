"""Docker's filter grammar, in one place for every list, prune and events call.

A filter is ``key=value``. The same key given twice is OR, different keys are AND
(``-f status=exited -f status=created -f label=a`` is "exited or created, and labelled
a"). A key a command does not know is refused in one line, as dockerd refuses it.
The Engine API sends the same thing as JSON, ``{"key": {"value": true}}`` or the
older ``{"key": ["value"]}``; both read into the same object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping

from dockyard.errors import InvalidArgument

__all__ = ["Filters"]


class Filters:
    """The values asked for each key, checked against the keys one command accepts."""

    def __init__(self, values: Mapping[str, Iterable[str]] | None = None,
                 allowed: Iterable[str] | None = None) -> None:  # fmt: skip
        self._values: dict[str, list[str]] = {}
        for key, vals in (values or {}).items():
            self._values.setdefault(key, []).extend(vals)
        if allowed is not None:
            self.check(allowed)

    def check(self, allowed: Iterable[str]) -> Filters:
        """This, when every key is one of ``allowed``; refused in one line otherwise."""
        known = set(allowed)
        for key in self._values:
            if key not in known:
                raise InvalidArgument(f"invalid filter '{key}'")
        return self

    @classmethod
    def parse(cls, args: Iterable[str], allowed: Iterable[str] | None = None) -> Filters:
        """From the CLI's ``--filter key=value`` arguments."""
        values: dict[str, list[str]] = {}
        for arg in args:
            key, eq, value = arg.partition("=")
            if not eq:
                raise InvalidArgument(f"bad format of filter (expected name=value): {arg}")
            values.setdefault(key.strip().lower(), []).append(value)
        return cls(values, allowed)

    @classmethod
    def from_json(cls, text: str | None, allowed: Iterable[str] | None = None) -> Filters:
        """From the Engine API's ``filters`` query parameter."""
        if not text:
            return cls({}, allowed)
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise InvalidArgument(f"invalid filters: {err}") from None
        if not isinstance(raw, dict):
            raise InvalidArgument("invalid filters: want an object of key to values")
        values: dict[str, list[str]] = {}
        for key, vals in raw.items():
            if isinstance(vals, dict):
                values[key] = [v for v, on in vals.items() if on]
            elif isinstance(vals, list) and all(isinstance(v, str) for v in vals):
                values[key] = list(vals)
            else:
                raise InvalidArgument(f"invalid filters: values of '{key}' are not strings")
        return cls(values, allowed)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def get(self, key: str) -> list[str]:
        return list(self._values.get(key, ()))

    def keys(self) -> list[str]:
        return list(self._values)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._values.items()}

    def to_json(self) -> str:
        return json.dumps({k: {v: True for v in vals} for k, vals in self._values.items()})

    def match(self, key: str, test: Callable[[str], bool]) -> bool:
        """True when ``key`` was not asked for, or one of its values passes ``test``."""
        vals = self._values.get(key)
        return vals is None or any(test(v) for v in vals)

    def bool_value(self, key: str) -> bool | None:
        """A true/false filter (``dangling``): None when absent; refused when not a boolean."""
        vals = self._values.get(key)
        if not vals:
            return None
        out = set()
        for v in vals:
            low = v.lower()
            if low not in ("true", "1", "false", "0"):
                raise InvalidArgument(f"invalid filter '{key}={v}'")
            out.add(low in ("true", "1"))
        if len(out) > 1:
            raise InvalidArgument(f"invalid filter '{key}': both true and false asked for")
        return out.pop()

    def labels(self, labels: Mapping[str, str] | None) -> bool:
        """Every ``label`` filter holds (``key``, ``key=value``), and no ``label!`` one does:
        Docker ANDs labels, unlike other repeated keys."""
        have = labels or {}

        def holds(spec: str) -> bool:
            k, eq, v = spec.partition("=")
            return k in have and (not eq or have[k] == v)

        return all(holds(s) for s in self.get("label")) and not any(
            holds(s) for s in self.get("label!")
        )

    def name(self, key: str, name: str) -> bool:
        """A ``name`` filter: Docker matches it as a regular expression, anywhere in the name."""

        def test(pattern: str) -> bool:
            try:
                return re.search(pattern, name) is not None
            except re.error:
                return pattern in name

        return self.match(key, test)
