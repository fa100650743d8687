"""``repocket.model``: where repocket 0.1's API reference documents ``ActiveRecord``
(``class repocket.model.ActiveRecord``), so code written against it still imports. The
class lives in ``repocket.api.model``; ``from repocket import ActiveRecord`` is the same."""

from .api.model import ActiveRecord

__all__ = ["ActiveRecord"]
