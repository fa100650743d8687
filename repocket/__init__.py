"""repocket: a Redis active-record where every model operation is one atomic Lua script call."""

from . import attributes, errors
from .api.changes import Change, ChangeGroup
from .api.model import ActiveRecord
from .api.queryset import QuerySet
from .api.result import ResultSet
from .connections import configure
from .core.ops import KEEP_TTL
from .core.update import F
from .exec.observe import CallReport

__version__ = "0.2.0"
__all__ = ["KEEP_TTL", "ActiveRecord", "CallReport", "Change", "ChangeGroup", "F", "QuerySet",
           "ResultSet", "attributes", "configure", "errors"]
