"""Which key layout the configured connection needs: one server keeps the documented keys,
a Redis Cluster splits each model into hash-tagged shards (see ``keys.py``). Set by
``configure.connection_pool``, read when an operation is compiled (as the default codec is)."""

from __future__ import annotations

from ..errors import Unsupported


class _Layout:
    cluster = False


CURRENT = _Layout()


def on_cluster() -> bool:
    return CURRENT.cluster


def set_cluster(cluster: bool) -> None:
    CURRENT.cluster = cluster


def refuse_on_cluster(operation: str, model: str = "") -> None:
    """Raise :class:`errors.Unsupported` for an operation the cluster layout cannot run yet."""
    if CURRENT.cluster:
        where = f"{model}: " if model else ""
        raise Unsupported(f"{where}{operation} is not supported on Redis Cluster yet; "
                          "nothing was sent")
