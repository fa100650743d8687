"""repocket: a Redis active-record where every model operation is one atomic Lua script call."""

from . import attributes, errors
from .connections import configure
from .model import ActiveRecord
from .query import QuerySet
from .result import ResultSet

__version__ = "0.2.0"
__all__ = ["ActiveRecord", "QuerySet", "ResultSet", "attributes", "configure", "errors"]
