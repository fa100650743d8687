"""repocket: a Redis active-record where every model operation is one atomic Lua script call."""

from . import attributes, errors
from .connections import configure
from .manager import ResultSet
from .model import ActiveRecord

__version__ = "0.2.0"
__all__ = ["ActiveRecord", "ResultSet", "attributes", "configure", "errors"]
