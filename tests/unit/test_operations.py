"""compile_* produce the KEYS/ARGV their Lua headers document; hydrate/from_redis build
instances from hand-made replies. No Redis: replies are built here."""

from __future__ import annotations

import re
import uuid

import msgpack
import pytest

from repocket import KEEP_TTL, ActiveRecord, attributes, errors
from repocket.core.codecs import CompactCodec, EnvelopeCodec
from repocket.core.hydrate import from_redis, hydrate, reader_for
from repocket.core.lua import SCRIPT_NAMES, SCRIPTS, load_script
from repocket.core.ops import (
    MAX_DEPTH,
    READ_BUDGET,
    TTL,
    compile_append,
    compile_delete,
    compile_get,
    compile_save,
    read_schema,
)
from repocket.core.plan import DEFAULT_MAX_BYTES, Call

UID = "970773fa-4de1-11e5-86f4-6c4008a70392"
TID = "40997aa4-71fc-4ad3-b0d7-04c0fac6d6d8"
ENV = EnvelopeCodec()


class Tgt(ActiveRecord):
    class Meta:
        namespace = "unit.ops"

    name = attributes.Unicode()
    notes = attributes.ByteStream()


class Rec(ActiveRecord):
    class Meta:
        namespace = "unit.ops"

    name = attributes.Unicode()
    note = attributes.Unicode(null=True)
    n = attributes.Integer()
    target = attributes.Pointer(Tgt, null=True)
    out = attributes.ByteStream()
    err = attributes.ByteStream(null=True)


class Loop(ActiveRecord):
    class Meta:
        namespace = "unit.ops"
        codec = "compact"

    label = attributes.Unicode()
    next = attributes.Pointer("self", null=True)


HASH = f"repocket:unit.ops:Rec:{UID}"
IDS = "repocket:unit.ops:Rec:ids"
EXPIRY = ("repocket:unit.ops:Rec:ttl", "repocket:unit.ops:Rec:ttl:entries")  # after the model keys
OUT, ERR = f"{HASH}:field:out", f"{HASH}:field:err"
THASH = f"repocket:unit.ops:Tgt:{TID}"


def enc(model: type[ActiveRecord], name: str, value: object) -> bytes:
    return model._meta.codec.encode(model._meta.fields[name], value)


def saved(record: ActiveRecord) -> ActiveRecord:
    """Mark a record saved as the save script's 'saved' reply would."""
    compile_save(record).decode(b"saved")
    return record


def split_save_args(call: Call) -> dict[str, object]:
    """The parts of a one-record save call (the generated save script's ARGV layout)."""
    n_records, max_bytes = call.args[:2]
    assert (n_records, max_bytes) == (1, DEFAULT_MAX_BYTES)
    # these models have no indexes: the records start at KEYS[4], after the id set and
    # the two expiry keys; the streams follow the hash
    n_streams = sum(key.startswith(f"{call.keys[3]}:field:") for key in call.keys)
    args = call.args[2:]
    n_set, n_del = args[2], args[3]
    rest = list(args[5:])
    pairs = rest[:2 * n_set]
    return {
        "id": args[0], "partial": args[1], "pointers": args[4],
        "set": dict(zip(pairs[::2], pairs[1::2], strict=True)),
        "del": rest[2 * n_set:2 * n_set + n_del],
        "streams": [tuple(rest[2 * n_set + n_del + 2 * i:2 * n_set + n_del + 2 * i + 2])
                    for i in range(n_streams)],
        "ttl": rest[2 * n_set + n_del + 2 * n_streams],
        "tail": rest[2 * n_set + n_del + 2 * n_streams + 1:],
    }


# -- save --------------------------------------------------------------------------------
def test_first_save_sends_every_field_and_hdels_nones() -> None:
    record = Rec(id=UID, name="a", note=None, n=3, err=b"")
    call = compile_save(record)
    assert call.script.name == "save" and call.model == "Rec"
    assert call.keys == (IDS, *EXPIRY, HASH, OUT, ERR)
    parts = split_save_args(call)
    assert parts["id"] == UID
    assert parts["partial"] == b"0"
    assert parts["set"] == {"id": enc(Rec, "id", uuid.UUID(UID)), "name": enc(Rec, "name", "a"),
                            "n": enc(Rec, "n", 3)}
    assert parts["del"] == ["note", "target"]
    # a new record replaces old streams: `out` (never None) empty is no key; `err`
    # (null=True) empty is an empty key, distinct from None
    assert parts["streams"] == [(b"D", b""), (b"S", b"")]
    assert parts["ttl"] == b""  # no Meta.ttl, no ttl=: the deadline (none) is kept
    assert parts["tail"] == []
    assert call.key_fields == {}
    assert call.decode(b"saved") == {"hash": HASH, "strings": {"out": OUT, "err": ERR}}
    assert record._persisted


def test_partial_save_sends_only_changed_fields() -> None:
    record = saved(Rec(id=UID, name="a", note="x", n=3))
    parts = split_save_args(compile_save(record))
    assert parts["partial"] == b"1"
    assert parts["set"] == {} and parts["del"] == [] and parts["streams"] == [(b"", b"")] * 2

    record.name = "b"
    record.n = 3  # same value: not sent
    record.note = None  # was stored: HDEL
    parts = split_save_args(compile_save(record))
    assert parts["set"] == {"name": enc(Rec, "name", "b")}
    assert parts["del"] == ["note"]


def test_partial_save_does_not_hdel_a_field_already_absent() -> None:
    record = saved(Rec(id=UID, note=None))
    record.name = "changed"
    parts = split_save_args(compile_save(record))
    assert parts["del"] == []
    assert list(parts["set"]) == ["name"]


def test_minus_zero_is_a_change_from_zero() -> None:
    class F(ActiveRecord):
        class Meta:
            namespace = "unit.ops"

        x = attributes.Float()

    record = saved(F())
    record.x = -0.0
    assert split_save_args(compile_save(record))["set"] == {"x": enc(F, "x", -0.0)}


def test_gone_reply_raises_does_not_exist() -> None:
    """No resurrection: 'gone' (the record was deleted meanwhile) is an error, not a
    whole save (issue 12)."""
    record = saved(Rec(id=UID, name="a", n=1))
    record.name = "b"
    first = compile_save(record)
    assert split_save_args(first)["partial"] == b"1"
    with pytest.raises(errors.DoesNotExist):
        first.decode(b"gone")
    assert record._stored["name"] != enc(Rec, "name", "b")  # nothing applied


def test_whole_save_writes_every_field_and_stream() -> None:
    """compile_save(whole=True), what save(force_insert=True) sends: every field, the
    streams set whatever was synced."""
    record = saved(Rec(id=UID, out=b"already saved", name="a", n=1))
    record.name = "b"
    parts = split_save_args(compile_save(record, whole=True))
    assert parts["partial"] == b"0"
    assert set(parts["set"]) == {"id", "name", "n"}
    assert parts["del"] == ["note", "target"]  # null=True, never given a value: None
    assert parts["streams"][0] == (b"S", b"already saved")


def test_stream_ops_append_set_delete_and_leave() -> None:
    # a new instance sets its streams; a value that does not extend the saved one replaces it,
    # and an empty one deletes the key
    record = Rec(id=UID, out=b"abc", err=b"")
    assert split_save_args(compile_save(record))["streams"][0] == (b"S", b"abc")
    saved(record)
    assert split_save_args(compile_save(record))["streams"][0] == (b"", b"")
    record.out = b"abcdef"
    assert split_save_args(compile_save(record))["streams"][0] == (b"A", b"def")
    saved(record)
    record.out = b"xyz"  # does not extend what was saved: replaces it
    assert split_save_args(compile_save(record))["streams"][0] == (b"S", b"xyz")
    saved(record)
    record.out = b""
    assert split_save_args(compile_save(record))["streams"][0] == (b"D", b"")
    record.err = None
    assert split_save_args(compile_save(record))["streams"][1] == (b"D", b"")


def test_a_new_instance_deletes_a_null_stream_it_holds_as_none() -> None:
    """A new instance knows nothing of what Redis holds under its id: a null=True stream
    left None (its initial value) deletes whatever stream an older record left there."""
    record = Rec(id=UID)
    assert record.err is None
    assert split_save_args(compile_save(record))["streams"][1] == (b"D", b"")
    saved(record)
    assert split_save_args(compile_save(record))["streams"][1] == (b"", b"")  # known None


def test_unsaved_appends_are_buffered_and_sent_by_save() -> None:
    record = Rec(id=UID)
    assert record.append_out(b"ab") == 2
    assert record.append_out(b"\xff") == 3
    assert split_save_args(compile_save(record))["streams"][0] == (b"S", b"ab\xff")


def test_pointer_keys_are_checked_only_when_the_pointer_changes() -> None:
    target = saved(Tgt(id=TID))
    record = Rec(id=UID, target=target)
    call = compile_save(record)
    assert call.keys == (IDS, *EXPIRY, HASH, OUT, ERR, THASH)
    assert call.key_fields == {THASH: "target"}
    assert split_save_args(call)["set"]["target"] == enc(Rec, "target", target)
    call.decode(b"saved")
    record.name = "other"
    assert compile_save(record).keys == (IDS, *EXPIRY, HASH, OUT, ERR)  # pointer unchanged


def test_unsaved_pointer_target_raises_before_any_call() -> None:
    target = Tgt(id=TID)
    record = Rec(id=UID, target=target)
    with pytest.raises(errors.UnsavedPointer) as raised:
        compile_save(record)
    assert (raised.value.model, raised.value.field, raised.value.value) == ("Rec", "target", target)
    assert not record._persisted


def test_json_mutated_in_place_is_a_validation_error_at_compile() -> None:
    class J(ActiveRecord):
        class Meta:
            namespace = "unit.ops"

        data = attributes.JSON()

    record = J(data={"a": []})
    record.data["a"].append({1, 2})
    with pytest.raises(errors.ValidationError) as raised:
        compile_save(record)
    assert (raised.value.model, raised.value.field) == ("J", "data")
    assert raised.value.value is record.data


# -- delete, append ----------------------------------------------------------------------
def test_delete_call() -> None:
    record = saved(Rec(id=UID))
    call = compile_delete(record)
    assert (call.script.name, call.keys, call.args, call.model) == (
        "delete", (IDS, *EXPIRY, HASH, OUT, ERR), (UID,), "Rec")
    assert call.decode([1, 3]) == 3  # keys deleted, as 0.1 returned
    assert not record._persisted
    assert split_save_args(compile_save(record))["partial"] == b"0"


def test_append_call() -> None:
    record = saved(Rec(id=UID, out=b"ab"))
    call = compile_append(record, "out", b"cd")
    assert (call.script.name, call.keys, call.args, call.model) == (
        "append", (HASH, OUT), (b"cd", DEFAULT_MAX_BYTES), "Rec")
    assert call.key_fields == {OUT: "out"}
    assert call.decode(4) == 4
    assert record.out == b"abcd"
    assert split_save_args(compile_save(record))["streams"][0] == (b"", b"")


# -- get and filter ------------------------------------------------------------------------
def test_get_call_and_schema() -> None:
    call = compile_get(Rec, uuid.UUID(UID), depth=2)
    assert (call.script.name, call.keys, call.model) == ("get", (HASH,), "Rec")
    # one id: get is get_many of one; per key its model number, id and Pointer depth
    assert call.args == (2, READ_BUDGET, 1, UID, 0)
    assert "repocket:unit.ops:Tgt:" in call.script.source  # Pointer targets' prefix baked in
    schema, _ = read_schema(Rec)  # the generic reference's schema
    assert msgpack.unpackb(schema, raw=False) == [
        ["repocket:unit.ops:Rec", 1, ["out", "err"], [["target", 2]]],
        ["repocket:unit.ops:Tgt", 1, ["notes"], []],
    ]
    assert read_schema(Rec)[1] == [Rec, Tgt]


def test_schema_of_a_self_pointer_and_compact_codec() -> None:
    schema, models = read_schema(Loop)
    assert models == [Loop]
    assert msgpack.unpackb(schema, raw=False) == [["repocket:unit.ops:Loop", 0, [], [["next", 1]]]]


@pytest.mark.parametrize("depth", [-1, MAX_DEPTH + 1, True, 1.0, "1", None])
def test_bad_depth(depth: object) -> None:
    with pytest.raises(errors.InvalidQuery, match="pointer_depth"):
        compile_get(Rec, uuid.UUID(UID), depth)  # type: ignore[arg-type]


def flat_of(model: type[ActiveRecord], **values: object) -> list[bytes]:
    flat: list[bytes] = []
    for name, value in values.items():
        flat += [name.encode(), enc(model, name, value)]
    return flat


def rec_reply(target: object = None, **extra: object) -> list[object]:
    values: dict[str, object] = {"id": uuid.UUID(UID), "name": "root", "n": 5, **extra}
    if target is not None:
        values["target"] = target
    return [1, UID.encode(), flat_of(Rec, **values), [b"out-bytes", None]]


def test_hydrate_links_pointer_to_the_loaded_target() -> None:
    reply = [rec_reply(uuid.UUID(TID)),
             [2, TID.encode(), flat_of(Tgt, id=uuid.UUID(TID), name="t"), [b"\xffnotes"]]]
    root, target = hydrate([Rec, Tgt], reply)
    assert root.id == uuid.UUID(UID) and root.name == "root" and root.n == 5
    assert root.out == b"out-bytes" and root.err is None
    assert root.target is target
    assert target.name == "t" and target.notes == b"\xffnotes"
    assert root._persisted and target._persisted


def test_get_decode_returns_the_root() -> None:
    reply = [rec_reply()]
    record = compile_get(Rec, uuid.UUID(UID)).decode(reply)
    assert isinstance(record, Rec) and record.name == "root" and record.target is None
    missing = compile_get(Rec, uuid.UUID(UID)).decode([[1, UID.encode(), None, []]])
    assert missing is None


def test_hydrate_missing_target_is_none() -> None:
    reply = [rec_reply(uuid.UUID(TID)), [2, TID.encode(), None, []]]
    root, target = hydrate([Rec, Tgt], reply)
    assert target is None
    assert root._values["target"] is None


def test_hydrate_beyond_depth_keeps_the_id() -> None:
    (root,) = hydrate([Rec, Tgt], [rec_reply(uuid.UUID(TID))])
    assert root._values["target"] == uuid.UUID(TID)
    assert root.to_dict()["target"] == uuid.UUID(TID)


def test_hydrate_cycle_links_the_same_instances() -> None:
    a, b = UID, TID
    reply = [
        [1, a.encode(), [b"label", b"a", b"next", b.encode()], []],
        [1, b.encode(), [b"label", b"b", b"next", a.encode()], []],
    ]
    first, second = hydrate([Loop], reply)
    assert first.next is second and second.next is first
    assert (first.label, second.label) == ("a", "b")


def test_from_redis_fills_absent_fields() -> None:
    record = from_redis(Rec, UID.encode(), [], [None, None])
    assert record.id == uuid.UUID(UID)  # from the key, even with no stored id field
    assert record.name == "" and record.n == 0 and record.note is None
    assert record.out == b"" and record.err is None
    assert record._stored["name"] is None


def test_from_redis_ignores_unknown_stored_fields() -> None:
    record = from_redis(Rec, UID.encode(), [b"legacy", b"whatever", *flat_of(Rec, n=9)], [b"", b""])
    assert record.n == 9 and "legacy" not in record.to_dict()


@pytest.mark.parametrize(("name", "raw"), [
    ("n", b"not json"), ("n", b'{"type": "Integer", "value": "1.5"}'),
    ("name", b'{"type": "Unicode", "value": 5}'), ("name", b"\xff"),
    ("target", b'{"type": "Pointer", "value": "x:y"}'),
    ("n", b"[" * 100_000),
], ids=["not-json", "float-for-int", "non-string-value", "not-utf8", "pointer-not-uuid",
        "deeply-nested"])
def test_from_redis_garbage_is_stored_data_error(name: str, raw: bytes) -> None:
    with pytest.raises(errors.StoredDataError) as raised:
        from_redis(Rec, UID.encode(), [name.encode(), raw], [None, None])
    err = raised.value
    assert (err.model, err.field, err.key, err.value) == ("Rec", name, HASH, raw)


def _state(record: ActiveRecord) -> tuple[object, ...]:
    return (type(record), record._values, record._stored, record._synced_streams,
            record._persisted, record.__dict__.get("_dangling"), record._version)


@pytest.mark.parametrize("model", [Rec, Loop])
@pytest.mark.parametrize("case", ["whole", "absent", "extra", "no-streams"])
def test_generated_reader_builds_what_from_redis_builds(model: type[ActiveRecord],
                                                        case: str) -> None:
    values: dict[str, object] = {"id": uuid.UUID(UID)}
    if model is Rec:
        values.update(name="é", note="n", n=-3, target=uuid.UUID(TID))
    else:
        values.update(label="x", next=uuid.UUID(TID))
    flat = flat_of(model, **values)
    if case == "absent":
        flat = flat[:2]  # only the id field: every other one reads as its absent value
    elif case == "extra":
        flat = [b"legacy", b"whatever", *flat]
    streams: list[bytes | None] = [b"out", None][:len(model._meta.stream_names)]
    if case == "no-streams":
        streams = [None] * len(model._meta.stream_names)
    generated = reader_for(model)(UID.encode(), flat, streams)
    general = from_redis(model, UID.encode(), flat, streams)
    assert _state(generated) == _state(general)


@pytest.mark.parametrize(("name", "raw"), [("n", b"not json"), ("name", b"\xff"),
                                           ("target", b'{"type": "Pointer", "value": "x:y"}')])
def test_generated_reader_raises_the_typed_error_of_from_redis(name: str, raw: bytes) -> None:
    with pytest.raises(errors.StoredDataError) as raised:
        reader_for(Rec)(UID.encode(), [name.encode(), raw], [None, None])
    err = raised.value
    assert (err.model, err.field, err.key, err.value) == ("Rec", name, HASH, raw)


def test_compact_codec_from_redis() -> None:
    record = from_redis(Loop, UID.encode(), [b"label", b"\xc3\xa9", b"next", TID.encode()], [])
    assert record.label == "é" and record._values["next"] == uuid.UUID(TID)
    assert CompactCodec().decode(Loop._meta.fields["label"], b"x") == "x"


# -- the scripts ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_has_a_shebang_and_a_header(name: str) -> None:
    script = load_script(name)
    assert script == SCRIPTS[name]
    assert script.source.startswith("#!lua")
    assert "-- @include" not in script.source  # includes are expanded
    header = script.source.split("\n\n", 1)[0]
    assert re.search(r"^-- KEYS\[1\]", header, re.MULTILINE), header
    assert re.search(r"^-- ARGV\[1\]", header, re.MULTILINE), header
    assert re.search(r"^-- Reply:", header, re.MULTILINE), header
    assert f"-- {name}:" in header


def test_included_helpers_are_defined_in_the_scripts() -> None:
    assert "local function fail" in SCRIPTS["save"].source
    assert "local function load_record" in SCRIPTS["get"].source
    assert "local function load_record" in SCRIPTS["query"].source
    assert SCRIPTS["get"].source.startswith("#!lua flags=no-writes")
    assert SCRIPTS["query"].source.startswith("#!lua flags=no-writes")
    assert len({script.sha for script in SCRIPTS.values()}) == len(SCRIPTS)


@pytest.mark.parametrize("ttl, op", [
    (1.5, b"1500"), (60, b"60000"), (0.0001, b"1"), (None, b"P"), (KEEP_TTL, b""),
    (TTL.DEFAULT, b""),
])
def test_the_ttl_op_of_a_save(ttl: object, op: bytes) -> None:
    call = compile_save(Rec(id=UID), ttl=ttl)  # type: ignore[arg-type]
    assert split_save_args(call)["ttl"] == op


def test_meta_ttl_is_the_default_ttl_op() -> None:
    class Expiring(ActiveRecord):
        class Meta:
            namespace = "unit.ops"
            ttl = 2.5

        name = attributes.Unicode()

    call = compile_save(Expiring(id=UID))
    assert call.args[-1] == b"2500"
    assert compile_save(Expiring(id=UID), ttl=KEEP_TTL).args[-1] == b""
