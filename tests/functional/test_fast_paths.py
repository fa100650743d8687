"""Differential test of the generated scripts' fast paths (repocket.core.luagen): every
call runs through the script as generated on one database and through the same script
without its fast path (luagen.general_only: the general path answers every call) on
another. Random models (as in test_generated_scripts) and random calls: create, save,
get_or_create by a unique constraint or the id, update by id (literals, Integer
arithmetic, small and large), delete, get; keys of the wrong type planted under a call.
The replies, failures included, and every key must be identical (no documented
difference: both scripts check in the same order).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import hypothesis.strategies as st
import redis
from hypothesis import given

from repocket import ActiveRecord, F, errors
from repocket.core import luagen, ops
from repocket.core import update as updates
from repocket.core.lua import Script
from repocket.core.plan import Call

from .hypothesis_support import profile
from .test_generated_scripts import (
    build_model,
    in_field_order,
    keyspace,
    model_specs,
    new_record,
    pair_clients,  # noqa: F401  (the fixture)
    run,
    setup_targets,
    value_for,
)

PROFILE = profile("repocket-fast-paths", ci={"max_examples": 25}, soak={"max_examples": 2_000})
OPERATIONS = ["create", "create", "save", "get_or_create", "get_or_create", "update", "update",
              "delete", "get", "get"]


def general_scripts(model: type[ActiveRecord]) -> dict[str, Script]:
    """The model's scripts without their fast paths, by name."""
    meta = model._meta
    codecs = tuple(m._meta.codec.is_envelope for m in meta.reachable_models)
    return {name: luagen.compile_source(name, luagen.general_only(source))
            for name, source in luagen.sources(meta, codecs)}


class Pair:
    """The scripts as generated on one database, without their fast paths on another."""

    def __init__(self, fast: redis.Redis, general: redis.Redis, model: type[ActiveRecord]):
        self.fast, self.general = fast, general
        self.generated, self.expected = fast, general  # as setup_targets names them
        self.scripts = general_scripts(model)

    def check(self, call: Call | Any, plant: int | None = None) -> Any:
        while isinstance(call, Call):
            planted = call.keys[plant % len(call.keys)] if plant is not None else None
            if planted is not None:
                for client in (self.fast, self.general):
                    client.delete(planted)
                    client.rpush(planted, b"planted")
            before = keyspace(self.fast)
            outcome = run(self.fast, call)
            expected = run(self.general, replace(call, script=self.scripts[call.script.name]))
            if call.script.name == "get":  # HGETALL lists fields in hash-table order
                outcome, expected = in_field_order(outcome), in_field_order(expected)
            assert outcome == expected, (call.script.name, outcome, expected)
            if outcome[0] == "error":
                assert keyspace(self.fast) == before, "a failed call wrote"
            self.compare()
            if planted is not None:
                for client in (self.fast, self.general):
                    client.delete(planted)
            if outcome[0] == "error":
                return None
            call = call.decode(outcome[1])
            plant = None
        return call

    def compare(self) -> None:
        assert keyspace(self.fast) == keyspace(self.general)


@PROFILE
@given(spec=model_specs(), data=st.data())
def test_fast_paths_match_the_general_path(
        pair_clients: tuple[redis.Redis, redis.Redis],  # noqa: F811
        spec: dict[str, Any], data: st.DataObject) -> None:
    # optimistic_lock and a change feed: no fast path (the general path only)
    model = build_model({**spec, "lock": False, "changes": False})
    pair = Pair(*pair_clients, model)
    setup_targets(pair)  # type: ignore[arg-type]
    saved: list[ActiveRecord] = []
    for _ in range(data.draw(st.integers(3, 12))):
        operation = data.draw(st.sampled_from(OPERATIONS))
        plant = data.draw(st.none() | st.integers(0, 30)) if data.draw(st.integers(0, 5)) == 0 \
            else None
        # a Pointer to a record deleted meanwhile is refused in Python, before any call
        with contextlib.suppress(errors.UnsavedPointer, errors.DoesNotExist):
            run_operation(pair, model, spec, data, saved, operation, plant)
    pair.compare()


def run_operation(pair: Pair, model: type[ActiveRecord], spec: dict[str, Any],
                  data: st.DataObject, saved: list[ActiveRecord], operation: str,
                  plant: int | None) -> None:
    meta = model._meta
    if operation == "create" or not saved:
        record = new_record(model, spec, data, saved)
        if pair.check(ops.compile_save(record), plant) is not None:
            saved.append(record)
    elif operation == "save":
        record = data.draw(st.sampled_from(saved))
        for name in data.draw(st.lists(st.sampled_from(list(spec["fields"])), max_size=2)):
            setattr(record, name, value_for(spec, name, data))
        pair.check(ops.compile_save(record), plant)
    elif operation == "get_or_create":
        record = new_record(model, spec, data, saved)
        group = data.draw(st.sampled_from([(meta.pk_name,), *meta.unique_together]))
        found = pair.check(ops.compile_get_or_create(record, group), plant)
        if found is not None and found[1]:
            saved.append(record)
    elif operation == "update":
        record = data.draw(st.sampled_from(saved))
        values = update_values(spec, data)
        if values:
            call = updates.update_op(model.objects.filter(id=record.pk).state, values)
            pair.check(call, plant)
    elif operation == "delete":
        record = data.draw(st.sampled_from(saved))
        if pair.check(ops.compile_delete(record), plant) is not None:
            saved.remove(record)
    elif operation == "get":
        record = data.draw(st.sampled_from(saved))
        pair.check(ops.compile_get(model, record.pk, data.draw(st.integers(0, 2))), plant)


def update_values(spec: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """update()'s keywords: literals, and Integer fields' arithmetic (small, large, of
    None, a lone field)."""
    values: dict[str, Any] = {}
    for name in data.draw(st.lists(st.sampled_from(list(spec["fields"])), max_size=2,
                                   unique=True)):
        if spec["fields"][name]["kind"] == "int" and data.draw(st.booleans()):
            values[name] = data.draw(st.sampled_from([
                F(name) + 1, F(name) - 2, F(name) * 3, F(name) // 2, F(name) + 2**70,
                F(name) * 2**40, F(name)]))
        else:
            values[name] = value_for(spec, name, data)
    return values
