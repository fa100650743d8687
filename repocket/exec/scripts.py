"""Kept for imports written before ``repocket.exec`` was split: use ``repocket.exec``
(``sync.execute``, ``translate.translate_error``, ``limits.max_bytes``)."""

from __future__ import annotations

from typing import Any

import redis
import redis.exceptions as rexc

from ..core.lua import Script
from .limits import _MAX_BYTES, max_bytes, may_read_config
from .sync import execute
from .translate import translate_error

__all__ = ["_MAX_BYTES", "evalsha", "execute", "max_bytes", "may_read_config",
           "translate_error"]


def evalsha(client: redis.Redis, script: Script, keys: tuple[Any, ...],
            args: tuple[Any, ...]) -> Any:
    """One script call through redis-py's own client (tests compare raw replies with it):
    EVALSHA, and EVAL when the server does not know the script. redis-py errors raise."""
    try:
        return client.evalsha(script.sha, len(keys), *keys, *args)
    except rexc.NoScriptError:
        return client.eval(script.source, len(keys), *keys, *args)
