"""Key names, built only by repocket.keys, and model definition rules (no Redis)."""

from __future__ import annotations

import pathlib
import re
import uuid

import pytest

import repocket
from repocket import ActiveRecord, attributes, errors
from repocket.core import keys
from repocket.core.ops import compile_append, compile_delete, compile_save

UID = "970773fa-4de1-11e5-86f4-6c4008a70392"


class Parent(ActiveRecord):
    class Meta:
        namespace = "unit.keys"

    name = attributes.Unicode()
    log = attributes.ByteStream()


class Child(Parent):
    extra = attributes.Integer()


class Plain(ActiveRecord):
    name = attributes.Unicode()


class Linked(ActiveRecord):
    class Meta:
        namespace = "unit-keys"

    key = attributes.AutoUUID()
    parent = attributes.Pointer(Parent)
    me = attributes.Pointer("self", null=True)


# -- the key layout --------------------------------------------------------------------
def test_key_functions() -> None:
    prefix = keys.model_prefix("ns", "User")
    assert prefix == "repocket:ns:User"
    assert keys.record_key(prefix, UID) == f"repocket:ns:User:{UID}"
    assert keys.stream_key(keys.record_key(prefix, UID), "stdout") == (
        f"repocket:ns:User:{UID}:field:stdout")
    assert keys.ids_key(prefix) == "repocket:ns:User:ids"


@pytest.mark.parametrize(("text", "valid"), [
    ("tests", True), ("tests.functional.test_active_record", True), ("a-b_c.d9", True),
    ("_private", True), ("", False), ("a:b", False), ("a b", False), ("a*", False),
    ("{tag}", False), ("9starts_with_digit", False), ("é", False), ("a\n", False),
    ("x" * 200, True), ("x" * 201, False), ("-dash", False), (".dot", False),
])
def test_is_valid_name_part(text: str, valid: bool) -> None:
    assert keys.is_valid_name_part(text) is valid


def test_models_use_the_documented_layout() -> None:
    meta = Parent._meta
    assert meta.prefix == keys.model_prefix("unit.keys", "Parent") == "repocket:unit.keys:Parent"
    assert meta.ids_key == "repocket:unit.keys:Parent:ids"
    assert meta.record_key(uuid.UUID(UID)) == f"repocket:unit.keys:Parent:{UID}"
    assert Plain._meta.namespace == __name__ == "tests.unit.test_keys"
    assert Plain._meta.prefix == "repocket:tests.unit.test_keys:Plain"
    assert Child._meta.prefix == "repocket:unit.keys:Child"  # Meta is inherited, name is not


def test_save_and_delete_and_append_keys_come_from_repocket_keys() -> None:
    record = Parent(id=UID, name="n")
    hash_key = keys.record_key(Parent._meta.prefix, UID)
    save = compile_save(record)
    prefix = Parent._meta.prefix
    assert save.keys == (keys.ids_key(prefix), keys.deadlines_key(prefix),
                         keys.expiry_entries_key(prefix), hash_key,
                         keys.stream_key(hash_key, "log"))
    assert compile_delete(record).keys == save.keys
    assert compile_append(record, "log", b"x").keys == (hash_key, keys.stream_key(hash_key, "log"))


def test_no_other_python_module_spells_key_names() -> None:
    package = pathlib.Path(repocket.__file__).parent
    offenders = []
    for path in package.glob("*.py"):
        if path.name == "keys.py":
            continue
        source = path.read_text()
        for pattern in (r"['\"]repocket:\S", r":field:", r"['\"]:ids['\"]", r"['\"]:['\"] *\+"):
            if re.search(pattern, source):
                offenders.append((path.name, pattern))
    assert offenders == []


# -- definitions -------------------------------------------------------------------------
def test_implicit_id_is_an_auto_uuid_listed_first() -> None:
    assert list(Plain._meta.fields) == ["id", "name"]
    assert isinstance(Plain._meta.fields["id"], attributes.AutoUUID)
    assert Plain._meta.pk_name == "id"
    record = Plain()
    assert record.pk == record.id and isinstance(record.id, uuid.UUID)


def test_an_explicit_auto_uuid_is_the_pk_under_its_own_name() -> None:
    assert Linked._meta.pk_name == "key"
    assert "id" not in Linked._meta.fields
    record = Linked(key=UID)
    assert record.pk == uuid.UUID(UID)


def test_inheritance_of_fields() -> None:
    assert list(Parent._meta.fields) == ["id", "name", "log"]
    assert list(Child._meta.fields) == ["id", "name", "log", "extra"]
    assert Child._meta.stream_names == ("log",)
    child = Child(name="c", extra=3, log=b"x")
    assert (child.name, child.extra, child.log) == ("c", 3, b"x")
    assert callable(child.append_log)
    with pytest.raises(errors.UnknownField):
        Parent(extra=3)
    assert Child._meta.fields["id"] is Parent._meta.fields["id"]


def test_subclass_can_override_a_field() -> None:
    class Override(Parent):
        name = attributes.Integer()

    assert isinstance(Override._meta.fields["name"], attributes.Integer)
    assert isinstance(Parent._meta.fields["name"], attributes.Unicode)
    assert Override(name="5").name == 5


def test_append_methods_are_generated_per_stream() -> None:
    class Streams(ActiveRecord):
        class Meta:
            namespace = "unit"

        stdout = attributes.ByteStream()
        stderr = attributes.ByteStream()
        raw = attributes.Bytes()

    assert Streams._meta.stream_names == ("stdout", "stderr")
    assert Streams.append_stdout.__name__ == "append_stdout"
    assert "APPEND" in Streams.append_stderr.__doc__
    assert not hasattr(Streams, "append_raw")
    record = Streams()
    assert record.append_stdout(b"ab") == 2  # unsaved: buffered
    assert record.append_stdout("cd") == 4
    assert record.stdout == b"abcd" and record.stderr == b""


def test_pointer_self_resolves_to_the_model() -> None:
    assert Linked._meta.fields["me"].to_model is Linked
    assert Linked._meta.pointer_names == ("parent", "me")
    assert Linked._meta.reachable_models == [Linked, Parent]


def _define(body: dict, name: str = "Bad", meta: type | None = None) -> type:
    namespace = {"__module__": "unit", **body}
    if meta is not None:
        namespace["Meta"] = meta
    return type(ActiveRecord)(name, (ActiveRecord,), namespace)


@pytest.mark.parametrize("body", [
    {"a": attributes.AutoUUID(), "b": attributes.AutoUUID()},
    {"id": attributes.Unicode()},
    {"p": attributes.Pointer(int)},
    {"p": attributes.Pointer(ActiveRecord)},
    {"p": attributes.Pointer("Parent")},
    {"p": attributes.Pointer(Parent(name="instance"))},
    {"p": attributes.Pointer(None)},
    {"save": attributes.Unicode()},
    {"delete": attributes.Unicode()},
    {"objects": attributes.Unicode()},
    {"pk": attributes.Unicode()},
    {"to_dict": attributes.Unicode()},
    {"matches": attributes.Unicode()},
    {"create": attributes.Unicode()},
    {"Meta": attributes.Unicode()},
    {"_values": attributes.Unicode()},
    {"_private": attributes.Unicode()},
    {"log": attributes.ByteStream(), "append_log": attributes.Unicode()},
], ids=lambda body: ",".join(body))
def test_definition_errors(body: dict) -> None:
    with pytest.raises(errors.RepocketActiveRecordDefinitionError) as raised:
        _define(body)
    assert "Bad" in str(raised.value)
    assert isinstance(raised.value, errors.RepocketError)


def test_second_auto_uuid_in_a_subclass_is_a_definition_error() -> None:
    with pytest.raises(errors.RepocketActiveRecordDefinitionError):
        class Twice(Linked):
            other = attributes.AutoUUID()


@pytest.mark.parametrize("namespace", ["has space", "a:b", "a*b", "{slot}", "é", "x" * 201,
                                       "new\nline", "trailing\n"])
def test_bad_namespace_is_a_definition_error(namespace: str) -> None:
    meta = type("Meta", (), {"namespace": namespace})
    with pytest.raises(errors.RepocketActiveRecordDefinitionError):
        _define({"name": attributes.Unicode()}, meta=meta)


@pytest.mark.parametrize("codec", ["pickle", "Envelope", ""])
def test_bad_codec_is_a_definition_error(codec: str) -> None:
    meta = type("Meta", (), {"codec": codec})
    with pytest.raises(errors.RepocketActiveRecordDefinitionError, match="codec"):
        _define({"name": attributes.Unicode()}, meta=meta)


def test_bad_class_name_is_a_definition_error() -> None:
    # keys.is_valid_name_part documents itself as the check for the class segment too
    with pytest.raises(errors.RepocketActiveRecordDefinitionError):
        _define({"name": attributes.Unicode()}, name="Bad:Name")


def test_good_definition_with_every_option() -> None:
    meta = type("Meta", (), {"namespace": "ok-ns_1.x", "codec": "compact"})
    model = _define({"name": attributes.Unicode()}, name="Good", meta=meta)
    assert model._meta.prefix == "repocket:ok-ns_1.x:Good"
    assert model._meta.codec.name == "compact"


def test_objects_is_on_the_class_only() -> None:
    assert Plain.objects.model is Plain
    with pytest.raises(AttributeError):
        Plain().objects  # noqa: B018


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        Plain("x")
