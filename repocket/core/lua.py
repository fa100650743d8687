"""Lua sources: ``repocket/lua/<verb>.lua`` read once, includes expanded, hashed.

``-- @include _name`` lines pull in a shared ``_name.lua``. A :class:`Script`
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


_INCLUDE = re.compile(r"^-- @include (_[a-z_]+)$", re.MULTILINE)
SCRIPT_NAMES = ("save", "get", "delete", "append", "query", "reindex", "prune")


def _read(name: str) -> str:
    return (resources.files("repocket") / "lua" / f"{name}.lua").read_text("utf-8")


def load_script(name: str) -> Script:
    source = _INCLUDE.sub(lambda match: _read(match.group(1)), _read(name))
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


SCRIPTS: dict[str, Script] = {name: load_script(name) for name in SCRIPT_NAMES}
