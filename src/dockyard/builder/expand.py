"""Docker's word processing for Dockerfile arguments: quotes, escapes, ``$VAR``.

What BuildKit's ``shell.Lex`` does for ADD, COPY, ENV, EXPOSE, FROM, LABEL,
STOPSIGNAL, USER, VOLUME, WORKDIR and ARG: single quotes keep everything,
double quotes keep spaces and still expand, the escape character (``\\`` or the
one ``# escape=`` chose) escapes the next character, and ``$VAR``, ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:+alt}``, ``${VAR+alt}``,
``${VAR:?message}`` expand from the build's environment.
"""

from __future__ import annotations

from dockyard.errors import InvalidArgument

__all__ = ["process_word", "process_words"]


def process_word(word: str, env: dict[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, variables expanded, no splitting."""
    return "".join(_Lexer(word, env, escape).words(split=False))


def process_words(text: str, env: dict[str, str], escape: str = "\\") -> list[str]:
    """Split on unquoted whitespace (after expansion, as Docker: expanded text is not re-split)."""
    return _Lexer(text, env, escape).words(split=True)


class _Lexer:
    def __init__(self, text: str, env: dict[str, str], escape: str) -> None:
        self.text, self.env, self.escape = text, env, escape
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _next(self) -> str:
        ch = self._peek()
        self.pos += 1
        return ch

    def words(self, split: bool) -> list[str]:
        out: list[str] = []
        current: list[str] = []
        started = False
        while self.pos < len(self.text):
            ch = self._next()
            if split and ch in " \t\n":
                if started:
                    out.append("".join(current))
                    current, started = [], False
                continue
            started = True
            if ch == self.escape:
                nxt = self._next()
                current.append(nxt if nxt else ch)
            elif ch == "'":
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise InvalidArgument(
                        f"unexpected end of statement while looking for matching single-quote in {self.text!r}"
                    )
                current.append(self.text[self.pos : end])
                self.pos = end + 1
            elif ch == '"':
                current.append(self._double_quoted())
            elif ch == "$":
                current.append(self._variable())
            else:
                current.append(ch)
        if started:
            out.append("".join(current))
        return out

    def _double_quoted(self) -> str:
        out = []
        while True:
            if self.pos >= len(self.text):
                raise InvalidArgument(
                    f"unexpected end of statement while looking for matching double-quote in {self.text!r}"
                )
            ch = self._next()
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self._peek() in ('"', "$", self.escape):
                out.append(self._next())
            elif ch == "$":
                out.append(self._variable())
            else:
                out.append(ch)

    def _name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (
            self.text[self.pos].isalnum() or self.text[self.pos] == "_"
        ):
            self.pos += 1
        return self.text[start : self.pos]

    def _variable(self) -> str:
        if self._peek() == "{":
            self.pos += 1
            name = self._name()
            if not name:
                raise InvalidArgument(f"bad substitution in {self.text!r}")
            op = ""
            if self._peek() == ":":
                op = self._next() + self._next()
            elif self._peek() in ("-", "+", "?"):
                op = self._next()
            word = []
            depth = 0
            while True:
                if self.pos >= len(self.text):
                    raise InvalidArgument(f"missing '}}' in {self.text!r}")
                ch = self._next()
                if ch == "}" and depth == 0:
                    break
                if ch == "$" and self._peek() == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                word.append(ch)
            alt = process_word("".join(word), self.env, self.escape) if op else ""
            value = self.env.get(name)
            if op == "":
                return value or ""
            if op == ":-":
                return value if value else alt
            if op == "-":
                return value if value is not None else alt
            if op == ":+":
                return alt if value else ""
            if op == "+":
                return alt if value is not None else ""
            if op in (":?", "?"):
                if (op == ":?" and not value) or value is None:
                    raise InvalidArgument(f"{name}: {alt or 'is not allowed to be unset'}")
                return value
            raise InvalidArgument(f"unsupported modifier ({op}) in substitution in {self.text!r}")
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")
