"""The repocket 0.1 tutorial, end to end, exactly as documented (with the stored
spelling 'Gryffindor'). This module's name is the one the documentation shows in
its key names: repocket:tests.functional.test_active_record:User:<id>."""

from __future__ import annotations

import json
import uuid

import redis

from repocket import ActiveRecord, attributes

HARRY_ID = "970773fa-4de1-11e5-86f4-6c4008a70392"
RON_ID = "40997aa4-71fc-4ad3-b0d7-04c0fac6d6d8"
HARRY_KEY = f"repocket:tests.functional.test_active_record:User:{HARRY_ID}"


class User(ActiveRecord):
    name = attributes.Unicode()
    house_name = attributes.Unicode()
    email = attributes.Bytes()
    password = attributes.Bytes()
    metadata = attributes.JSON()


TRICKS = ["Protego", "Expelliarmus", "Wingardium Leviosa", "Expecto Patronum"]


def create_harry_and_ron() -> tuple[User, User]:
    harry = User.create(
        id=HARRY_ID,
        name="Harry Potter",
        email="harry@hogwards.uk",
        house_name="Gryffindor",
        password=b"somethingsecret",
        metadata={"known_tricks": TRICKS},
    )
    ron = User.create(
        id=RON_ID,
        name="Ron Weasley",
        house_name="Gryffindor",
        email="ron@hogwards.uk",
        password=b"somethingsecret",
        metadata={"known_tricks": TRICKS[:2]},
    )
    return harry, ron


def test_tutorial_end_to_end(client: redis.Redis) -> None:
    harry, _ron = create_harry_and_ron()
    assert harry.save() == {"hash": HARRY_KEY, "strings": {}}

    harry = User.objects.get(id=HARRY_ID)
    assert harry.metadata == {"known_tricks": TRICKS}
    assert harry.id == uuid.UUID(HARRY_ID)
    assert harry["id"] == uuid.UUID(HARRY_ID)
    assert harry.email == b"harry@hogwards.uk"  # Bytes accepts str, as the tutorial does

    results = User.objects.filter(house_name="Gryffindor")
    assert len(results) == 2
    assert sorted(r.name for r in results) == ["Harry Potter", "Ron Weasley"]
    ordered = User.objects.filter(house_name="Gryffindor").order_by("-name")
    assert [r.name for r in ordered] == ["Ron Weasley", "Harry Potter"]
    assert [r.name for r in ordered.order_by("name")] == ["Harry Potter", "Ron Weasley"]
    assert User.objects.filter(house_name="Griffindor") == []  # the docs' typo matches nothing

    harry = User.objects.get(id=HARRY_ID)
    assert harry.delete() == 1
    assert User.objects.get(id=HARRY_ID) is None
    assert [r.name for r in User.objects.all()] == ["Ron Weasley"]


def test_storage_is_the_documented_envelope(client: redis.Redis) -> None:
    create_harry_and_ron()
    stored = {k.decode(): json.loads(v) for k, v in client.hgetall(HARRY_KEY).items()}
    assert set(stored) == {"id", "name", "house_name", "email", "password", "metadata"}
    assert stored["email"] == {"type": "Bytes", "value": "harry@hogwards.uk",
                               "module": "repocket.attributes"}
    assert stored["name"] == {"type": "Unicode", "value": "Harry Potter",
                              "module": "repocket.attributes"}
    assert stored["id"] == {"type": "AutoUUID", "value": HARRY_ID,
                            "module": "repocket.attributes"}
    # JSON fields hold real JSON text (repocket 0.1 stored a Python repr here)
    assert stored["metadata"]["type"] == "JSON"
    assert json.loads(stored["metadata"]["value"]) == {"known_tricks": TRICKS}
    # byte for byte the layout `redis-cli HGETALL` shows in the documentation
    assert client.hget(HARRY_KEY, "name") == (
        b'{"type": "Unicode", "value": "Harry Potter", "module": "repocket.attributes"}')
    assert client.smembers("repocket:tests.functional.test_active_record:User:ids") == {
        HARRY_ID.encode(), RON_ID.encode()}


def test_the_documented_module_paths_import() -> None:
    """0.1's API reference names repocket.model.ActiveRecord and
    repocket.connections.configure: both import, as the very objects repocket exports."""
    import repocket
    from repocket.connections import configure
    from repocket.model import ActiveRecord as Documented

    assert Documented is ActiveRecord and configure is repocket.configure
