"""The build context: its files as COPY/ADD see them, ``.dockerignore``, and content hashes.

``.dockerignore`` follows Docker's rules: one pattern a line, ``#`` comments,
``**`` for any number of directories, ``!`` for exceptions (the last matching
line wins), and a pattern that matches a directory excludes what is under it.

Hashing a file for the cache reads it only when its (device, inode, size,
mtime) changed since the last build: those are remembered in the database.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat

from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.metadata import Database

__all__ = ["BuildContext", "Ignore", "read_dockerfile"]


def _clean(path: str) -> str:
    from dockyard.inroot import clean

    return clean(path.replace("\\", "/"))


def _regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i : i + 2] == "**":
                i += 2
                if pattern[i : i + 1] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out))


class Ignore:
    """Compiled ``.dockerignore`` patterns."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = _clean(line[1:].strip() if negate else line)
            if pattern:
                self.rules.append((negate, _regex(pattern)))

    @classmethod
    def load(cls, context: str) -> Ignore:
        try:
            with open(os.path.join(context, ".dockerignore")) as f:
                return cls(f.read().splitlines())
        except FileNotFoundError:
            return cls([])

    def excluded(self, rel: str) -> bool:
        """Whether context path ``rel`` is left out (a parent directory's match counts)."""
        if not self.rules:
            return False
        rel = _clean(rel)
        parents = [rel]
        head = rel
        while "/" in head:
            head = head.rsplit("/", 1)[0]
            parents.append(head)
        result = False
        for negate, regex in self.rules:
            if any(regex.match(p) for p in parents):
                result = not negate
        return result


class BuildContext:
    def __init__(self, root: str, db: Database | None = None) -> None:
        self.root = os.path.realpath(root)
        self.ignore = Ignore.load(self.root)
        self.db = db
        self._known: dict[str, tuple] | None = None  # path -> (dev, inode, size, mtime_ns, digest)
        self._fresh: list[tuple] = []

    def real(self, rel: str) -> str:
        """Where context path ``rel`` leads, its symlinks (the last one too) resolved as if
        the context were ``/``, as BuildKit resolves COPY sources: never out of the context."""
        from dockyard.inroot import Root

        with Root(self.root) as root:
            return root.resolve(rel)

    def resolve(self, source: str) -> list[str]:
        """Context-relative paths a COPY/ADD source names (globs allowed); errors as Docker's."""
        rel = _clean(source)
        if os.path.normpath(source.lstrip("/")).startswith(".."):
            raise InvalidArgument(f"forbidden path outside the build context: {source}")
        if not any(ch in rel for ch in "*?["):
            full = os.path.join(self.root, self.real(rel))
            if not os.path.lexists(full) or (rel and self.ignore.excluded(rel)):
                raise InvalidArgument(f'failed to compute cache key: "/{rel}": not found')
            return [rel]
        pattern = _regex(rel)  # as Go's filepath.Match: a * stops at /
        depth = rel.count("/")
        matches = []
        for base, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = os.path.relpath(os.path.join(base, name), self.root)
                if pattern.match(path) and not self.ignore.excluded(path):
                    matches.append(path)
            level = 0 if base == self.root else os.path.relpath(base, self.root).count("/") + 1
            if level >= depth:
                dirs[:] = []
        if not matches:
            raise InvalidArgument(
                f'failed to compute cache key: no source files were specified by "{source}"'
            )
        return sorted(matches)

    def walk(self, rel: str) -> list[tuple[str, os.stat_result]]:
        """(context-relative path, lstat) of ``rel`` (resolved, see ``real``) and, for a
        directory, all under it that .dockerignore keeps; sorted, parents before children."""
        rel = self.real(rel)
        full = os.path.join(self.root, rel)
        st = os.lstat(full)
        out = [(rel, st)]
        if stat.S_ISDIR(st.st_mode):
            for base, dirs, files in os.walk(full):
                dirs.sort()
                for name in sorted(dirs) + sorted(files):
                    path = os.path.relpath(os.path.join(base, name), self.root)
                    if self.ignore.excluded(path):
                        if name in dirs:
                            dirs.remove(name)
                        continue
                    out.append((path, os.lstat(os.path.join(base, name))))
        return out

    def digest(self, rel: str, st: os.stat_result) -> str:
        """sha256 of a regular file's content, read only if it changed since last asked."""
        full = os.path.join(self.root, rel)
        if self._known is None:
            # one query for the whole context instead of one per file
            rows = self.db.query("SELECT path, dev, inode, size, mtime_ns, digest FROM context_hashes "
                                 "WHERE path >= ? AND path < ?", (self.root + "/", self.root + "0")) if self.db else []  # fmt: skip
            self._known = {r["path"]: tuple(r)[1:] for r in rows}
        known = self._known.get(full)
        if known and known[:4] == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
            return known[4]
        h = hashlib.sha256()
        with open(full, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        value = "sha256:" + h.hexdigest()
        self._known[full] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, value)
        self._fresh.append((full, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, value))
        return value

    def remember(self) -> None:
        """Store the digests computed since the last call, in one transaction."""
        if self.db is not None and self._fresh:
            with self.db.tx() as c:
                c.executemany(
                    "INSERT OR REPLACE INTO context_hashes VALUES (?, ?, ?, ?, ?, ?)", self._fresh
                )
        self._fresh = []

    def fingerprint(self, rels: list[str]) -> dict[str, str]:
        """What a COPY of ``rels`` depends on: for every path, type, mode, owner and content
        (not times), as {path: summary}."""
        out = {}
        for rel in rels:
            base = os.path.dirname(rel)
            for path, st in self.walk(rel):
                name = os.path.relpath(path, base) if base else path
                kind = stat.S_IFMT(st.st_mode)
                head = f"{kind:o} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"
                if stat.S_ISREG(st.st_mode):
                    out[name] = f"{head} {self.digest(path, st)}"
                elif stat.S_ISLNK(st.st_mode):
                    out[name] = f"{head} -> {os.readlink(os.path.join(self.root, path))}"
                else:
                    out[name] = head
        self.remember()
        return out


def read_dockerfile(path: str, shown: str) -> str:
    """The Dockerfile at ``path`` (a host path the user gave); refused as ``docker build``
    words it, naming the file as ``shown``."""
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidArgument(
            f"failed to read dockerfile: open {shown}: no such file or directory"
        ) from None
