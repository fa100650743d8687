"""Lua sources: ``repocket/lua/<verb>.lua`` read once, includes expanded, hashed.

``-- @include _name`` lines pull in a shared ``_name.lua`` (``dir/_name``: a part
in a subfolder, as ``query/_sources``). A :class:`Script`
is its source and SHA1: what EVALSHA/EVAL/SCRIPT LOAD need. Reading package
files is the only thing done here; nothing talks to Redis.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


_INCLUDE = re.compile(r"^-- @include ((?:[a-z]+/)?_?[a-z_]+)$", re.MULTILINE)
SCRIPT_NAMES = ("save", "get", "delete", "append", "query", "reindex", "prune", "audit_keys",
                "scan", "feed_group", "ttl", "persist", "claim", "claims_read",
                "revoke")
# The checker's scripts write only in 'repair' mode; checking runs them flagged no-writes.
READ_ONLY_VARIANTS = ("reindex", "prune", "audit_keys")


def _read(name: str) -> str:
    return (resources.files("repocket") / "lua" / f"{name}.lua").read_text("utf-8")


def make_script(name: str, source: str) -> Script:
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


_script = make_script


def expand(source: str, included: set[str] | None = None) -> str:
    """``source`` with its ``-- @include`` lines replaced by the files they name
    (``_name`` or ``lib/name``), recursively; a file already included is not included
    twice."""
    done = set() if included is None else included

    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in done:
            return f"-- ({name} included above)"
        done.add(name)
        return expand(_read(name), done)

    return _INCLUDE.sub(include, source)


def load_script(name: str) -> Script:
    return make_script(name, expand(_read(name)))


def read_only(script: Script) -> Script:
    """``script`` with its shebang replaced by ``#!lua flags=no-writes``, named
    ``<name>:read-only``: Redis runs it on a read-only replica and over maxmemory, and
    refuses any write it would make (so checking provably changes nothing)."""
    _shebang, newline, body = script.source.partition("\n")
    return _script(f"{script.name}:read-only", "#!lua flags=no-writes" + newline + body)


SCRIPTS: dict[str, Script] = {name: load_script(name) for name in SCRIPT_NAMES}
SCRIPTS.update({f"{name}:read-only": read_only(SCRIPTS[name]) for name in READ_ONLY_VARIANTS})
