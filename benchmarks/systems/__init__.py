"""Registry of benchmarked systems; peers that are not installed are reported, not fatal."""

from __future__ import annotations

import importlib

from .base import LABELS, OPS, NotSupported, System, label

# name -> (module, class). Order is the column/row order in reports.
REGISTRY: dict[str, tuple[str, str]] = {
    "raw-evalsha": ("raw_redispy", "RawEvalsha"),
    "raw-pipeline": ("raw_redispy", "RawPipeline"),
    "repocket-envelope": ("repocket_models", "RepocketEnvelope"),
    "repocket-compact": ("repocket_models", "RepocketCompact"),
    "walrus": ("walrus", "WalrusSystem"),
    "rom": ("rom", "RomSystem"),
    "redis-om": ("redis_om", "RedisOmSystem"),
    "limpyd": ("limpyd", "LimpydSystem"),
}
BASELINES = ("raw-evalsha", "raw-pipeline")
PEERS = ("walrus", "rom", "redis-om", "limpyd")
# The hand-written variant each ratio is against, per operation.
BASELINE_FOR = {
    "save": "raw-evalsha", "get": "raw-evalsha", "delete": "raw-evalsha",
    "filter": "raw-evalsha", "range": "raw-evalsha", "append": "raw-evalsha",
    "bulk_create": "raw-pipeline", "get_many": "raw-pipeline",
    "get_or_create": "raw-evalsha", "update_f": "raw-evalsha",
}


def load(name: str) -> System:
    """Instantiate a system; ImportError (with the reason) when its library is missing."""
    module_name, class_name = REGISTRY[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    cls: type[System] = getattr(module, class_name)
    return cls()


__all__ = ["BASELINES", "BASELINE_FOR", "LABELS", "OPS", "PEERS", "REGISTRY", "NotSupported",
           "System", "label", "load"]
