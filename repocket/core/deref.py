"""Pointers on a Redis Cluster, where a record and its targets live in different slots. No I/O.

On one server a save checks its Pointer targets inside its script and a read loads the
targets in its script. On a cluster a script only reaches its own shard, so:

- a save first reads its targets (one read per target shard, gathered), refuses a missing
  one with ``PointerTargetMissing`` (nothing written), then saves: a soft foreign key with
  a window between the read and the write (a target deleted meanwhile is not noticed);
- a read (``get``, ``get_many``, a query) loads its records without following Pointers,
  then loads their targets one depth level at a time, each level one read per target
  shard (gathered: one pipeline per node), and links them as ``hydrate`` does.

Both use the root model's generated get script with a depth of 0 (it follows nothing),
on records of one shard of one model per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..attributes import mark_dangling, uuid_text
from ..errors import PointerTargetMissing
from .hydrate import from_redis, hydrate
from .luagen import scripts_for
from .plan import Call, Gather, gather, then

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

CHUNK = 500  # records one read call loads
Item = tuple[int, str]  # (model number in the root model's read schema, id text)


def read_raw(model: type[ActiveRecord], items: Sequence[Item]) -> Call | Gather | list[Any]:
    """The get script's replies ``(number, id, flat or None, streams)`` for ``items``
    (no Pointer followed), one call per shard of each model (and CHUNK records)."""
    models = model._meta.reachable_models
    groups: dict[str, list[Item]] = {}
    for number, text in dict.fromkeys(items):
        prefix = models[number - 1]._meta.prefix_of(text)
        groups.setdefault(f"{number}:{prefix}", []).append((number, text))
    calls = [_raw_call(model, group[start:start + CHUNK])
             for group in groups.values() for start in range(0, len(group), CHUNK)]
    result: Call | Gather | list[Any] = gather(
        calls, lambda replies: [entry for reply in replies for entry in reply])
    return result


def _raw_call(model: type[ActiveRecord], items: Sequence[Item]) -> Call:
    models = model._meta.reachable_models
    keys = tuple(models[number - 1]._meta.record_key(text) for number, text in items)
    args: list[Any] = [0, max(len(items), 1)]
    for number, text in items:
        args += (number, text, 0)
    return Call(scripts_for(model).get, keys, tuple(args), list, model._meta.name)


def checking_targets(model: type[ActiveRecord], targets: Sequence[tuple[Any, str, str]],
                     call: Any) -> Any:
    """``call`` (a save), after a read proving every target ``(target model, id text,
    field)`` exists; PointerTargetMissing (naming the field) before anything is written."""
    if not targets:
        return call
    numbers = model._meta.model_numbers
    fields = {(numbers[target], text): (field, target) for target, text, field in targets}

    def verdict(entries: list[Any]) -> Any:
        for number, raw_id, flat, _streams in entries:
            if not flat:
                field, target = fields[(int(number), raw_id.decode("ascii"))]
                key = target._meta.record_key(raw_id.decode("ascii"))
                raise PointerTargetMissing(
                    f"{model._meta.name}.{field} points at {key!r}, which does not exist; "
                    "nothing was written", model=model._meta.name, field=field, value=key)
        return call

    return then(read_raw(model, list(fields)), verdict)


def load_roots(model: type[ActiveRecord], ids: Sequence[str], depth: int) -> Any:
    """get_many on a cluster: the records (None when missing), in the order of ``ids``,
    their Pointers loaded ``depth`` levels deep."""
    def found(entries: list[Any]) -> Any:
        by_id = {entry[1].decode("ascii"): entry for entry in entries}
        records = hydrate(model._meta.reachable_models, [by_id[text] for text in ids])
        return follow(model, records, depth)

    return then(read_raw(model, [(1, text) for text in ids]), found)


def follow(model: type[ActiveRecord], roots: list[Any], depth: int) -> Any:
    """``roots`` (instances of ``model`` or None) with their Pointer targets loaded level
    by level, ``depth`` levels deep; targets past it keep their ids (loaded on access)."""
    if depth == 0 or not model._meta.pointer_names:
        return roots
    numbers = model._meta.model_numbers
    loaded: dict[Item, Any] = {(1, uuid_text(root.pk)): root for root in roots if root}
    models = model._meta.reachable_models

    def level(number: int, frontier: list[Any]) -> Any:
        wanted = [item for item in _targets(frontier, numbers) if item not in loaded]
        if number > depth or not wanted:
            return _link(list(loaded.values()), loaded, numbers)

        def arrived(entries: list[Any]) -> Any:
            fresh = []
            for entry_number, raw_id, flat, streams in entries:
                target = models[int(entry_number) - 1]
                instance = from_redis(target, raw_id, flat, streams) if flat else None
                loaded[(int(entry_number), raw_id.decode("ascii"))] = instance
                fresh.append(instance)
            return level(number + 1, fresh)

        return then(read_raw(model, wanted), arrived)

    return then(level(1, roots), lambda _linked: roots)


def _targets(instances: list[Any], numbers: dict[Any, int]) -> list[Item]:
    found: list[Item] = []
    for instance in instances:
        if instance is None:
            continue
        meta = type(instance)._meta
        for name in meta.pointer_names:
            target_id = instance._values.get(name)
            if target_id is not None and not hasattr(target_id, "_meta"):
                target = meta.fields[name].to_model
                found.append((numbers[target], uuid_text(target_id)))
    return found


def _link(instances: list[Any], loaded: dict[Item, Any], numbers: dict[Any, int]) -> None:
    """Each Pointer whose target was loaded set to it (marked dangling when it is gone)."""
    for instance in instances:
        if instance is None:
            continue
        meta = type(instance)._meta
        for name in meta.pointer_names:
            target_id = instance._values.get(name)
            if target_id is None or hasattr(target_id, "_meta"):
                continue
            target = meta.fields[name].to_model
            key = (numbers[target], uuid_text(target_id))
            if key in loaded:
                instance._values[name] = loaded[key]
                if loaded[key] is None:
                    mark_dangling(instance, name)

