"""What a server accepts: its longest string (``proto-max-bulk-len``), asked once per client
and only when a call needs it (``Call.args_for_limit``: a save that appends, a value over
1 MB). Shared by the sync and asyncio executors."""

from __future__ import annotations

import weakref
from typing import Any

import redis
import redis.exceptions as rexc

from ..core.plan import DEFAULT_MAX_BYTES

_MAX_BYTES: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def max_bytes(client: redis.Redis) -> int:
    """The server's proto-max-bulk-len, read once per client with CONFIG GET; Redis'
    default when the user may not run CONFIG. A client logged in as a named ACL user
    does not ask (the documented ACL rule does not grant CONFIG, and a refusal would
    fill the server's ACL LOG)."""
    limit = _MAX_BYTES.get(client)
    if limit is None:
        limit = DEFAULT_MAX_BYTES
        if may_read_config(client):
            try:
                reply: dict[Any, Any] = client.config_get("proto-max-bulk-len")
                limit = int(reply.get("proto-max-bulk-len") or DEFAULT_MAX_BYTES)
            except (rexc.ResponseError, ValueError, TypeError):
                pass
        _MAX_BYTES[client] = limit
    return limit


def may_read_config(client: Any) -> bool:
    """False for a client logged in as a named ACL user (see max_bytes)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    return kwargs.get("username") in (None, "", "default")
