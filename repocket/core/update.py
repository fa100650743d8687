"""``QuerySet.update()`` and ``F``: server-side updates, compiled into calls of the model's
generated update script. No I/O here.

``update(score=F("score") + 1, status="done")`` is checked whole in Python (fields,
literal values, expressions) before anything is sent, then runs as one script call per
page of matches: the script finds the candidates from the query's smallest source, checks
each against the filter as it stands then, computes the new values (exact arithmetic on
decimal texts for Integers and Decimals: ``lua/lib/arith.lua``) and writes them with their
index entries and unique claims, atomically per call.
"""

from __future__ import annotations

import collections
import dataclasses
import decimal
import functools
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..attributes import (
    Attribute,
    AutoUUID,
    Boolean,
    Decimal,
    Float,
    Integer,
    Pointer,
    short_repr,
    uuid_text,
)
from ..errors import InvalidQuery, UnknownField, UnsavedPointer, Unsupported, ValidationError
from . import keys as keyspace
from .codecs import CODECS, number_frame
from .deref import checking_targets
from .layout import on_cluster
from .luagen import scripts_for, sharded_update_for
from .ops import WRITE_BUDGET
from .plan import Call, Gather, Plan, gather, pack, then
from .query import SMALL_PLAN, Condition, QueryState, _Keys, _sources, compile_query

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

PAGE = 500  # the most candidates one update call examines (fewer for a model of many keys)
# Python refuses to write ints of more digits (sys.get_int_max_str_digits); Decimals get
# the same bound, so that one call's arithmetic stays short.
MAX_DIGITS = sys.get_int_max_str_digits() or 4300
# Arithmetic steps (lib/arith: about 0.1 us each) after which an update call takes no more
# records; only numbers of hundreds of digits come near it (a 4,300-digit addition is
# about 8,600 steps).
ARITH_BUDGET = 100_000
OPERATORS = {"+": "+", "-": "-", "*": "*", "/": "/", "//": "/"}


# -- F expressions ------------------------------------------------------------------------
class Combinable:
    """Arithmetic on a field's stored value: ``F("n") + 1``, ``2 * F("price")``..."""

    def _combine(self, op: str, other: Any, reversed_: bool = False) -> Expression:
        return Expression(op, other, self) if reversed_ else Expression(op, self, other)

    def __add__(self, other: Any) -> Expression:
        return self._combine("+", other)

    def __radd__(self, other: Any) -> Expression:
        return self._combine("+", other, True)

    def __sub__(self, other: Any) -> Expression:
        return self._combine("-", other)

    def __rsub__(self, other: Any) -> Expression:
        return self._combine("-", other, True)

    def __mul__(self, other: Any) -> Expression:
        return self._combine("*", other)

    def __rmul__(self, other: Any) -> Expression:
        return self._combine("*", other, True)

    def __truediv__(self, other: Any) -> Expression:
        return self._combine("/", other)

    def __rtruediv__(self, other: Any) -> Expression:
        return self._combine("/", other, True)

    def __floordiv__(self, other: Any) -> Expression:
        return self._combine("//", other)

    def __rfloordiv__(self, other: Any) -> Expression:
        return self._combine("//", other, True)


class F(Combinable):
    """The value a record holds in field ``name`` when ``update()`` reaches it (Django's
    ``F``): ``Model.objects.filter(...).update(n=F("n") + 1)`` computes on the server, in
    the same atomic call as the write."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"F({self.name!r})"


class Expression(Combinable):
    def __init__(self, op: str, left: Any, right: Any):
        self.op, self.left, self.right = op, left, right

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"


# -- what update() sends ------------------------------------------------------------------
# The arithmetic of each numeric field type, and the field types its F may read.
def _kind(attribute: Attribute) -> str | None:
    if isinstance(attribute, Boolean):
        return None
    if isinstance(attribute, Integer):
        return "int"
    if isinstance(attribute, Decimal):
        return "dec"
    if isinstance(attribute, Float):
        return "float"
    return None


_READABLE = {"int": ("int",), "dec": ("dec", "int"), "float": ("float", "int")}


@functools.lru_cache(maxsize=1024)
def _frame(codec_name: str, attribute: Attribute) -> tuple[bytes, bytes]:
    """``number_frame``, once per codec and field (the text around a number is fixed)."""
    return number_frame(CODECS[codec_name], attribute)


@dataclasses.dataclass(frozen=True)
class Assignments:
    """update()'s keyword arguments, checked and framed for the script."""

    packed: bytes  # ARGV[3] of the update script
    pointer_keys: dict[str, str]  # target hash -> field, checked to exist by the script
    reads: tuple[str, ...]  # fields the expressions read


# Assignments already compiled, by (model, codec, shape of the values): an update in a
# loop (``update(n=F("n") + 1)``) is checked and framed once. Bounded: cleared when full.
_COMPILED: dict[tuple[Any, ...], Assignments] = {}
_COMPILED_MAX = 1024
# Literals whose type and value decide the framing (floats and Decimals by repr, which
# tells -0.0 from 0.0 and 1.0 from 1.00); any other value is compiled every time.
_BY_VALUE = frozenset((str, int, bool, type(None)))
_BY_REPR = frozenset((float, decimal.Decimal))


def _shape(value: Any) -> Any:
    """A hashable key saying everything compile_assignments reads of ``value``, or None
    when there is none (an instance, a datetime...: compiled every time)."""
    kind = type(value)
    if kind in _BY_VALUE:
        return (kind, value)
    if kind in _BY_REPR:
        return (kind, repr(value))
    if kind is F:
        return ("f", value.name)
    if kind is Expression:
        left, right = _shape(value.left), _shape(value.right)
        return None if left is None or right is None else (value.op, left, right)
    return None


def compile_assignments(model: type[ActiveRecord], values: dict[str, Any]) -> Assignments:
    """Every assignment checked (typed errors naming model, field and value) and framed;
    the same shape of values (names, literal types and values, expressions) compiles once."""
    shapes = []
    for name, value in values.items():
        shape = _shape(value)
        if shape is None:
            return _compile_assignments(model, values)
        shapes.append((name, shape))
    key = (model, model._meta.codec.name, *shapes)
    found = _COMPILED.get(key)
    if found is None:
        found = _compile_assignments(model, values)
        if not found.pointer_keys:  # a Pointer's target key is checked each time
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.clear()
            _COMPILED[key] = found
    return found


def _compile_assignments(model: type[ActiveRecord], values: dict[str, Any]) -> Assignments:
    meta = model._meta
    if not values:
        raise InvalidQuery(f"{meta.name}.objects.update() needs at least one field to set",
                           model=meta.name)
    codec = meta.codec
    encoders = {name: encode for name, encode, _ in meta.encoders(codec)}
    framed: list[list[Any]] = []
    pointer_keys: dict[str, str] = {}
    reads: set[str] = set()
    for name, value in values.items():
        attribute = _target(model, name, value)
        if isinstance(value, Combinable):
            kind, tree = _expression(model, attribute, value, reads)
            head, tail = _frame(codec.name, attribute)
            framed.append([attribute.name, "expr", kind, tree, head, tail,
                           bool(getattr(attribute, "allow_nan", False)), attribute.nullable])
            continue
        cleaned = attribute.clean(value, meta.name)
        if cleaned is None:
            framed.append([attribute.name, "set", False, False])
            continue
        try:
            stored, canonical = encoders[name](cleaned), attribute.encode(cleaned)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ValidationError(f"{meta.name}.{name}: cannot encode {short_repr(value)}: "
                                  f"{exc}", model=meta.name, field=name, value=value) from None
        framed.append([attribute.name, "set", stored, canonical])
        if isinstance(attribute, Pointer):
            pointer_keys[_pointer_key(model, attribute, cleaned)] = name
    return Assignments(pack(framed), pointer_keys, tuple(sorted(reads)))


def _target(model: type[ActiveRecord], name: str, value: Any) -> Attribute:
    meta = model._meta
    attribute = meta.fields.get(meta.pk_name if name == "pk" else name)
    if attribute is None:
        raise UnknownField(f"{meta.name} has no field {name!r} to update; its fields are "
                           f"{list(meta.fields)}", model=meta.name, field=name, value=value)
    if isinstance(attribute, AutoUUID):
        raise ValidationError(f"{meta.name}.{attribute.name}: update() cannot change a "
                              "record's id", model=meta.name, field=attribute.name, value=value)
    if attribute.is_stream:
        raise ValidationError(f"{meta.name}.{name} is a ByteStream: update() sets fields of "
                              "the record's hash (use append_<name>() or save())",
                              model=meta.name, field=name, value=value)
    return attribute


def _pointer_key(model: type[ActiveRecord], pointer: Pointer[Any], value: Any) -> str:
    meta = model._meta
    if hasattr(value, "_meta") and not value._persisted:
        raise UnsavedPointer(f"{meta.name}.{pointer.name} would point at an unsaved "
                             f"{type(value).__name__} ({value.pk}); save it first",
                             model=meta.name, field=pointer.name, value=value)
    target: Any = pointer.to_model
    return target._meta.record_key(pointer.target_id(value))  # type: ignore[no-any-return]


def _expression(model: type[ActiveRecord], attribute: Attribute, expression: Combinable,
                reads: set[str]) -> tuple[str, list[Any]]:
    """(kind, tree) of an F expression assigned to ``attribute``: 'int' (exact, '/' is
    floor division), 'dec' (exact, no division) or 'float' (doubles, as Python)."""
    meta = model._meta
    kind = _kind(attribute)
    if kind is None:
        raise InvalidQuery(f"{meta.name}.{attribute.name}: F expressions compute Integer, "
                           f"Decimal and Float fields only, not a {type(attribute).__name__}",
                           model=meta.name, field=attribute.name, value=expression)

    def refuse(message: str, value: Any) -> InvalidQuery:
        return InvalidQuery(f"{meta.name}.{attribute.name} = {expression!r}: {message}",
                            model=meta.name, field=attribute.name, value=value)

    def tree(node: Any) -> list[Any]:
        if isinstance(node, F):
            source = meta.fields.get(meta.pk_name if node.name == "pk" else node.name)
            if source is None:
                raise UnknownField(f"{meta.name} has no field {node.name!r} (in "
                                   f"{attribute.name} = {expression!r})", model=meta.name,
                                   field=node.name, value=expression)
            if _kind(source) not in _READABLE[kind]:
                raise refuse(f"F({node.name!r}) is a {type(source).__name__}, which a "
                             f"{type(attribute).__name__} cannot compute with", node)
            reads.add(source.name)
            return ["f", source.name]
        if isinstance(node, Expression):
            op = node.op
            if kind == "dec" and op in ("/", "//"):
                raise refuse("Decimal division is refused: a quotient may have no exact "
                             "decimal form", node)
            if kind == "float" and op == "//":
                raise refuse("// on a Float: use /", node)
            right = tree(node.right)
            if op in ("/", "//") and right[0] == "n" and _is_zero(right[1]):
                raise ValidationError(f"{meta.name}.{attribute.name} = {expression!r}: "
                                      "division by zero", model=meta.name,
                                      field=attribute.name, value=node.right)
            return [OPERATORS[op], tree(node.left), right]
        return ["n", _literal(kind, node, refuse)]

    return kind, tree(expression)


def _is_zero(text: bytes) -> bool:
    return float(text) == 0


def _literal(kind: str, value: Any, refuse: Any) -> bytes:
    """A number of an expression, as the canonical text the arithmetic of ``kind`` takes."""
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        raise refuse(f"{short_repr(value)} is not a number", value)
    if kind == "int":
        if not isinstance(value, int):
            raise refuse(f"{short_repr(value)}: an Integer computes with ints only", value)
        return b"%d" % value
    if kind == "dec":
        number = decimal.Decimal(repr(value)) if isinstance(value, float) else \
            decimal.Decimal(value)
        if not number.is_finite():
            raise refuse(f"{short_repr(value)} is not a finite number", value)
        return str(number).encode("ascii")
    try:
        return repr(float(value)).encode("ascii")
    except OverflowError:
        raise refuse(f"{short_repr(value)} is too large for a Float", value) from None


# -- the calls ------------------------------------------------------------------------------
def page_size(model: type[ActiveRecord]) -> int:
    """Candidates per call: PAGE, fewer when each record's write runs many commands (its
    indexes and claims), so that a call stays within about WRITE_BUDGET commands."""
    per_record = 6 + 3 * len(model._meta.model_keys) + model._meta.changes  # + its XADD,
    # a deadline and kept values
    return max(1, min(PAGE, WRITE_BUDGET // per_record))


def _plan(state: QueryState, reads: tuple[str, ...], is_envelope: bool
          ) -> tuple[bytes, tuple[str, ...]]:
    """The query plan the update script follows (query.lua's sources and groups), with
    KEYS laid out as the model's write keys, and those KEYS."""
    meta = state.model._meta
    keys = _Keys(meta.ids_key)
    # every source key is a write key; the change feed (Meta.changes) comes after them
    keys.keys = list(meta.write_keys(meta.prefix))
    used = {c.field for _, conditions in state.groups for c in conditions} | set(reads)
    plan = {
        "envelope": is_envelope, "pk": meta.pk_name,
        "defaults": {name: value for name, value in meta.absent_values().items()
                     if name in used},
        "sources": _sources(state, keys),
        "groups": [[negated, [[c.field, meta.fields[c.field].family, c.op, list(c.values)]
                              for c in conditions]] for negated, conditions in state.groups],
    }
    return pack(plan), tuple(keys.keys)


_small_plan = functools.lru_cache(maxsize=512)(_plan)


def _call(state: QueryState, assignments: Assignments, page: int,
          prefix: str | None = None) -> Call:
    """A call of the update script; on a cluster (``prefix``: one shard's) the sharded
    variant, its KEYS those of the shard and the shard's record prefix in ARGV."""
    meta = state.model._meta
    size = sum(len(c.values) for _, conditions in state.groups for c in conditions)
    # small plans (most: a filter by id or a few values) are kept for reuse, as queries' are
    compiled = _small_plan if size <= SMALL_PLAN else _plan
    plan, keys = compiled(state, assignments.reads, meta.codec.is_envelope)
    script = scripts_for(state.model).update
    args: tuple[Any, ...] = (plan, page, assignments.packed, MAX_DIGITS, ARITH_BUDGET)
    if prefix is not None:  # every key of the plan is a model key: the shard's instead
        keys = tuple(keyspace.rebase(key, meta.prefix, prefix) for key in keys)
        script = sharded_update_for(state.model)
        args += (prefix + ":",)
    keys += tuple(assignments.pointer_keys)

    def decode(reply: list[Any]) -> _Reply:
        if reply[0] == b"list":
            return _Reply(0, listing=True)
        return _Reply(int(reply[1]), tuple(reply[2:]))

    return Call(script, keys, args, decode, meta.name, dict(assignments.pointer_keys))


@dataclasses.dataclass(frozen=True)
class _Reply:
    """What one update call did."""

    updated: int
    left: tuple[bytes, ...] = ()  # candidates it did not take (its arithmetic budget ran out)
    listing: bool = False  # more candidates than a page: nothing written, list the ids


def update_plan(state: QueryState, values: dict[str, Any]) -> Plan:
    """:func:`update_op` as a plan (run by either executor)."""
    op = update_op(state, values)
    if isinstance(op, (Call, Gather)):
        return (yield op)
    if isinstance(op, int):
        return op
    return (yield from op)


def update_op(state: QueryState, values: dict[str, Any]) -> Call | Gather | int | Plan:
    """The records updated, checked now: a filter that only pins ids is a chain of calls of
    the update-by-id script (one per page of ids; run as any Call, no plan to drive), any
    other filter the plan of :func:`_query_update`; 0 when nothing can match. On a
    cluster, the same calls per shard, gathered (:func:`_update_on_shards`)."""
    if state.offset or state.limit is not None:
        raise InvalidQuery("cannot update a sliced queryset (as in Django): filter it")
    assignments = compile_assignments(state.model, values)
    if on_cluster():
        _refuse_unique_on_cluster(state.model, values)
        return 0 if state.empty else _update_on_shards(state, values, assignments)
    if state.empty:
        return 0
    page = page_size(state.model)
    ids = pinned_ids(state)
    if ids is None:
        return _query_update(state, assignments, page)
    chunks = [ids[start:start + page] for start in range(0, len(ids), page)]
    return _ids_calls(state.model, assignments, chunks, 0) if chunks else 0


def _query_update(state: QueryState, assignments: Assignments, page: int) -> Plan:
    """One call when the query's smallest source holds at most a page of candidates; else
    the matching ids (query.lua), then one call per page of them, each checking the
    filter again for every record as it updates it."""
    reply: _Reply = yield _call(state, assignments, page)
    total, chunks = reply.updated, collections.deque([reply.left] if reply.left else [])
    if reply.listing:
        ids = yield compile_query(state.evolve(order=()), "ids")
        chunks.extend(_chunks(ids, page))
    while chunks:
        reply = yield _call(_among(state, chunks.popleft()), assignments, page)
        total += reply.updated
        if reply.left:  # the rest of this chunk first, in its order
            chunks.appendleft(reply.left)
    return total


def _among(state: QueryState, ids: tuple[bytes, ...]) -> QueryState:
    """``state`` restricted to ``ids`` (its filter still checked by the script)."""
    pk = state.model._meta.pk_name
    return state.evolve(groups=(*state.groups, (False, (Condition(pk, "in", ids),))))


def pinned_ids(state: QueryState) -> tuple[bytes, ...] | None:
    """The ids a filter pins when it is only ``id=`` / ``id__in=`` lookups (ANDed), in
    order, each once; None for any other filter (it needs the query script)."""
    pk = state.model._meta.pk_name
    pinned: set[bytes] | None = None
    order: tuple[bytes, ...] = ()
    for negated, conditions in state.groups:
        for condition in conditions:
            if negated or condition.field != pk or condition.op not in ("eq", "in"):
                return None
            if pinned is None:
                order = tuple(dict.fromkeys(condition.values))
                pinned = set(order)
            else:
                pinned &= set(condition.values)
    if pinned is None:
        return None
    return tuple(i for i in order if i in pinned)


def _ids_calls(model: type[ActiveRecord], assignments: Assignments,
               chunks: list[tuple[bytes, ...]], total: int, prefix: str | None = None) -> Call:
    """The call of the update-by-id script for the first page of ids (its header documents
    this frame); its reply decodes to the total updated, or to the next call: the ids its
    arithmetic budget left first, then the other pages. ``prefix``: the shard the ids
    belong to, on a cluster (the script builds no key: the same script serves a shard)."""
    meta = model._meta
    ids = chunks[0]
    hashes = tuple(meta.record_key(i.decode("ascii")) for i in ids)
    keys = (*meta.write_keys(prefix or meta.prefix), *hashes, *assignments.pointer_keys)

    def decode(reply: list[Any]) -> int | Call:
        done, left = total + int(reply[1]), tuple(reply[2:])
        rest = [left, *chunks[1:]] if left else chunks[1:]
        return _ids_calls(model, assignments, rest, done, prefix) if rest else done

    return Call(scripts_for(model).update_ids, keys,
                (len(ids), assignments.packed, MAX_DIGITS, ARITH_BUDGET, *ids), decode,
                meta.name, dict(assignments.pointer_keys))


def _chunks(ids: list[Any], size: int) -> Iterator[tuple[bytes, ...]]:
    for start in range(0, len(ids), size):
        yield tuple(uuid_text(i).encode("ascii") for i in ids[start:start + size])


# -- on a Redis Cluster ----------------------------------------------------------------------
def _refuse_unique_on_cluster(model: type[ActiveRecord], values: dict[str, Any]) -> None:
    """On a cluster a unique value is claimed globally, in the slot of the value
    (``claims.py``): a save takes it before it writes, which an update script, running in
    one shard, cannot do. Refused before anything is sent."""
    meta = model._meta
    constrained = {name for group in meta.unique_together for name in group}
    for name, value in values.items():
        field = meta.pk_name if name == "pk" else name
        if field in constrained:
            raise Unsupported(
                f"{meta.name}.{field}: update() assigning a field of a unique constraint "
                f"(here {short_repr(value)}) is not supported on Redis Cluster yet (its values "
                "are claimed globally, by save()); nothing was sent")


def _update_on_shards(state: QueryState, values: dict[str, Any],
                      assignments: Assignments) -> Call | Gather | int:
    """update() on a cluster: each shard concerned runs the calls one server would (the
    first page, then the listed ids page by page, each call re-checking the filter),
    the shards' first calls gathered (one pipeline per node); the counts summed. Atomic
    per call, so per shard and page, not across shards. Pointer literals name records in
    other slots: read first (as a save on a cluster does), not in the script's KEYS."""
    model = state.model
    meta = model._meta
    page = page_size(model)
    targets = _pointer_targets(model, values)
    if assignments.pointer_keys:
        assignments = dataclasses.replace(assignments, pointer_keys={})
    ids = pinned_ids(state)
    calls: list[Any]
    if ids is None:
        from .scatter import shards_concerned  # scatter builds on query, as this module

        calls = [_shard_update(state, assignments, page, prefix)
                 for prefix in shards_concerned(state)]
    else:
        by_shard: dict[str, list[bytes]] = {}
        for record_id in ids:
            by_shard.setdefault(meta.prefix_of(record_id.decode("ascii")), []).append(record_id)
        calls = [_ids_calls(model, assignments, [tuple(shard_ids[start:start + page])
                                                 for start in range(0, len(shard_ids), page)],
                            0, prefix)
                 for prefix, shard_ids in by_shard.items()]
    updated: Call | Gather | int = checking_targets(model, targets, gather(calls, sum))
    return updated


def _shard_update(state: QueryState, assignments: Assignments, page: int,
                  prefix: str) -> Call:
    """One shard's part of :func:`_query_update`, as a chain of calls: the first call, then
    (when its candidates were more than a page) the shard's matching ids, listed by
    query.lua, and one call per page of them; decodes to the shard's count."""
    def first(reply: _Reply) -> Any:
        if reply.listing:
            listed = compile_query(state.evolve(order=()), "ids", prefix=prefix)
            return then(listed, lambda ids: _shard_pages(
                state, assignments, page, prefix, list(_chunks(ids, page)), reply.updated))
        chunks = [reply.left] if reply.left else []
        return _shard_pages(state, assignments, page, prefix, chunks, reply.updated)

    call: Call = then(_call(state, assignments, page, prefix), first)
    return call


def _shard_pages(state: QueryState, assignments: Assignments, page: int, prefix: str,
                 chunks: list[tuple[bytes, ...]], total: int) -> Call | int:
    """The calls for ``chunks`` of one shard's ids, one after the other (what a call's
    arithmetic budget leaves goes first); decodes to ``total`` plus their counts."""
    if not chunks:
        return total

    def next_page(reply: _Reply) -> Call | int:
        rest = [reply.left, *chunks[1:]] if reply.left else chunks[1:]
        return _shard_pages(state, assignments, page, prefix, rest, total + reply.updated)

    call: Call = then(_call(_among(state, chunks[0]), assignments, page, prefix), next_page)
    return call


def _pointer_targets(model: type[ActiveRecord], values: dict[str, Any]
                     ) -> list[tuple[Any, str, str]]:
    """(target model, id text, field) of each Pointer assigned a record (checked already
    by compile_assignments: saved, of the right model)."""
    meta = model._meta
    targets = []
    for name, value in values.items():
        attribute = meta.fields.get(name)
        if not isinstance(attribute, Pointer) or isinstance(value, Combinable):
            continue
        cleaned = attribute.clean(value, meta.name)
        if cleaned is not None:
            targets.append((attribute.to_model, uuid_text(attribute.target_id(cleaned)), name))
    return targets
