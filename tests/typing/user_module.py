"""A user's module, checked by ``mypy --strict`` in tests/typing/test_types.py (never run):
each ``reveal_type`` line ends with the type mypy must reveal, each line ending in
``# error: <words>`` must be an error saying so, and no other line may have one."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from repocket import ActiveRecord, attributes


class Color(enum.Enum):
    RED = "red"


class Team(ActiveRecord):
    name = attributes.Unicode(unique=True)


class Player(ActiveRecord):
    id = attributes.AutoUUID()
    name = attributes.Unicode(index=True)
    nickname = attributes.Unicode(null=True)
    password = attributes.Bytes()
    log = attributes.ByteStream()
    score = attributes.Integer(index=True)
    ratio = attributes.Float(null=True)
    balance = attributes.Decimal()
    joined = attributes.DateTime(auto_now=True)
    left = attributes.DateTime(null=True)
    born = attributes.Date(null=True)
    active = attributes.Boolean()
    color = attributes.Enum(Color)
    token = attributes.UUID(null=True)
    extra = attributes.JSON()
    team = attributes.Pointer(Team)
    mentor = attributes.Pointer("self", null=True)


if TYPE_CHECKING:
    from typing_extensions import reveal_type

    p = Player(name="a")
    reveal_type(p.id)  # uuid.UUID
    reveal_type(p.name)  # str
    reveal_type(p.nickname)  # str | None
    reveal_type(p.password)  # bytes
    reveal_type(p.log)  # bytes
    reveal_type(p.score)  # int
    reveal_type(p.ratio)  # float | None
    reveal_type(p.balance)  # decimal.Decimal
    reveal_type(p.joined)  # datetime.datetime
    reveal_type(p.left)  # datetime.datetime | None
    reveal_type(p.born)  # datetime.date | None
    reveal_type(p.active)  # bool
    reveal_type(p.color)  # Color
    reveal_type(p.token)  # uuid.UUID | None
    reveal_type(p.extra)  # Any
    reveal_type(p.team)  # Team
    reveal_type(p.team.name)  # str
    reveal_type(Team().id)  # uuid.UUID
    reveal_type(Player.create(name="b"))  # Player
    reveal_type(Player.objects)  # Manager[Player]
    reveal_type(Player.objects.get(id=p.id))  # Player | None
    reveal_type(Player.objects.filter(score=1))  # QuerySet[Player]
    ordered = Player.objects.filter(score=1).exclude(name="x").order_by("score")
    reveal_type(ordered)  # ResultSet[Player]
    reveal_type(Player.objects.filter(score=1)[0:10])  # QuerySet[Player]
    reveal_type(Player.objects.all()[0])  # Player
    reveal_type(Player.objects.filter(score=1).first())  # Player | None
    reveal_type(Player.objects.all().last())  # Player | None
    reveal_type(Player.objects.get_many([p.id]))  # list[Player | None]
    reveal_type(Player.objects.all().iterator())  # Iterator[Player]
    reveal_type(Player.objects.bulk_create([p]))  # list[Player]
    reveal_type(Player.objects.none())  # QuerySet[Player]
    for x in Player.objects.filter(score=1):
        reveal_type(x)  # Player
    reveal_type(Player.objects.exclude(name="x").count())  # int
    print(p.scroe)  # error: "Player" has no attribute "scroe"
    bad: str = p.score  # error: Incompatible types in assignment
    print(Player.objects.fliter(score=1))  # error: "Manager[Player]" has no attribute "fliter"


async def async_forms(p: Player) -> None:
    from typing_extensions import reveal_type

    reveal_type(await Player.objects.aget(id=p.id))  # Player | None
    reveal_type(await Player.objects.all().afirst())  # Player | None
    reveal_type(await Player.objects.filter(score=1).alast())  # Player | None
    reveal_type(await Player.objects.all().alist())  # list[Player]
    reveal_type(await Player.objects.aget_many([p.id]))  # list[Player | None]
    reveal_type(await Player.objects.abulk_create([p]))  # list[Player]
    reveal_type(await Player.acreate(name="c"))  # Player
    async for record in Player.objects.filter(score=1):
        reveal_type(record)  # Player
    async for chunked in Player.objects.filter(score=1)[:5].aiterator():
        reveal_type(chunked)  # Player
