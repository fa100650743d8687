"""Executors: the only modules that talk to Redis. They run the plans the core compiles.

- ``sync.py``      the run loop: a Call and its follow-up Calls, one round trip each
- ``registry.py``  which scripts each server has; what a round trip carries (no I/O)
- ``lean.py``      the lean path: a connection kept per thread, packed with hiredis
- ``plain.py``     redis-py's own calls, for clients the lean path does not fit
- ``translate.py`` redis-py errors -> ``repocket.errors`` (no I/O)
- ``limits.py``    the server's longest string (proto-max-bulk-len), asked when a call needs it
"""

from .sync import execute, kept_connection, retire
from .translate import translate_error

__all__ = ["execute", "kept_connection", "retire", "translate_error"]
