"""Querysets: immutable, lazy, Django-style; each compiled into one ``query.lua`` call.

``parse_lookup`` turns ``field__lookup=value`` into a :class:`Condition` of
canonical values (lookups are the ``LOOKUPS`` table); ``compile_query`` turns a
:class:`QueryState` into a script call whose ``decode`` returns the result, or
the next call (the next page of a large scan, or the hydration of its rows).
Everything here is pure: :class:`repocket.api.queryset.QuerySet` runs the calls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..attributes import (
    UUID,
    Attribute,
    AutoUUID,
    Date,
    Integer,
    Pointer,
    Unicode,
    parse_uuid,
    short_repr,
)
from ..errors import (
    InvalidId,
    InvalidQuery,
    StoredDataError,
    UnknownField,
    ValidationError,
)
from . import keys as keyspace
from . import merge
from . import ops as operations
from .hydrate import hydrate, row_fields
from .layout import on_cluster
from .lua import SCRIPTS
from .plan import Call, Gather, pack, then

if TYPE_CHECKING:
    from ..api.model import ActiveRecord

ALL_FAMILIES = frozenset({"text", "exact", "float", "datetime", "json"})
ORDERED_FAMILIES = frozenset({"text", "exact", "float", "datetime"})
BUDGET = 1000  # candidates one script call may examine (~10 ms of server time, < 50 ms)
EXACT_SCORE = 2**53  # beyond this, sorted-set scores (doubles) round
DELETE_BATCH = 500


@dataclass(frozen=True)
class Lookup:
    op: str  # the operator query.lua evaluates
    arity: str  # 'one', 'many', 'pair' or 'bool'
    families: frozenset[str]


LOOKUPS: dict[str, Lookup] = {
    "exact": Lookup("eq", "one", ALL_FAMILIES),
    "in": Lookup("in", "many", ALL_FAMILIES),
    "gt": Lookup("gt", "one", ORDERED_FAMILIES),
    "gte": Lookup("gte", "one", ORDERED_FAMILIES),
    "lt": Lookup("lt", "one", ORDERED_FAMILIES),
    "lte": Lookup("lte", "one", ORDERED_FAMILIES),
    "range": Lookup("range", "pair", ORDERED_FAMILIES),
    "startswith": Lookup("startswith", "one", frozenset({"text"})),
    # Unicode fields only, checked over the candidates (no index answers them); the i-
    # forms compare ASCII letters case-insensitively (Lua's string.lower, as SQLite).
    "endswith": Lookup("endswith", "one", frozenset({"text"})),
    "contains": Lookup("contains", "one", frozenset({"text"})),
    "icontains": Lookup("icontains", "one", frozenset({"text"})),
    "iexact": Lookup("iexact", "one", frozenset({"text"})),
    "isnull": Lookup("isnull", "bool", ALL_FAMILIES),
}
# Operators an index can answer directly, by index kind.
INDEXABLE = {"score": {"eq", "in", "gt", "gte", "lt", "lte", "range"},
             "lex": {"eq", "in", "gt", "gte", "lt", "lte", "range", "startswith"}}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    values: tuple[Any, ...]  # canonical bytes, or one bool for isnull


@dataclass(frozen=True)
class QueryState:
    model: type[ActiveRecord]
    groups: tuple[tuple[bool, tuple[Condition, ...]], ...] = ()  # (negated, ANDed conditions)
    order: tuple[str, ...] = ()
    offset: int = 0
    limit: int | None = None
    only: tuple[str, ...] | None = None
    defer: tuple[str, ...] = ()
    depth: int = 1
    budget: int = BUDGET
    empty: bool = False  # none(): matches nothing, asks Redis nothing

    def evolve(self, **changes: Any) -> QueryState:
        """A copy with ``changes``: one dict copy, where ``dataclasses.replace`` runs
        ``__init__`` and its checks again (a refinement is on every query's path)."""
        copy = object.__new__(QueryState)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy


# -- lookups ---------------------------------------------------------------------------
def _field(model: type[ActiveRecord], name: str, value: Any = None) -> Attribute:
    meta = model._meta
    name = meta.pk_name if name == "pk" else name
    try:
        return meta.fields[name]
    except KeyError:
        raise UnknownField(f"{meta.name} has no field {name!r}; its fields are "
                           f"{list(meta.fields)}", model=meta.name, field=name,
                           value=value) from None


def canonical(model: type[ActiveRecord], attribute: Attribute, value: Any) -> bytes:
    """The canonical bytes of a lookup value, as the field stores it (never None: that
    is what ``isnull`` asks about)."""
    meta = model._meta
    if value is None and not isinstance(attribute, AutoUUID):  # a None id is an InvalidId
        raise InvalidQuery(f"{meta.name}.{attribute.name}: None is no value to compare with; "
                           f"use {attribute.name}__isnull=True", model=meta.name,
                           field=attribute.name, value=None)
    try:
        if isinstance(attribute, Pointer):
            return str(attribute.lookup_id(value)).encode("ascii")
        if isinstance(attribute, AutoUUID):
            return str(parse_uuid(value)).encode("ascii")
    except (TypeError, ValueError) as exc:
        error = InvalidId if isinstance(attribute, AutoUUID) else ValidationError
        raise error(f"{meta.name}.{attribute.name}: {exc}", model=meta.name,
                    field=attribute.name, value=value) from None
    return attribute.encode(attribute.clean(value, meta.name))


_UUID_PREFIX = frozenset("0123456789abcdef-")


def uuid_prefix(model: type[ActiveRecord], attribute: Attribute, value: Any) -> bytes:
    """The canonical form of the start of a UUID (lowercase hex and dashes), for
    ``startswith`` on a UUID or Pointer field; a whole UUID or instance is itself."""
    if isinstance(value, str):
        text = value.lower()
        if len(text) <= 36 and set(text) <= _UUID_PREFIX:
            return text.encode("ascii")
    elif isinstance(value, uuid.UUID) or hasattr(value, "_meta"):
        return canonical(model, attribute, value)
    meta = model._meta
    raise ValidationError(f"{meta.name}.{attribute.name}__startswith takes the start of a UUID "
                          f"(hex digits and dashes, at most 36), not {short_repr(value)}",
                          model=meta.name, field=attribute.name, value=value)


# the start of a stored Date, YYYY-MM-DD: '2026' (a year), '2026-01' (a month)...
_DATE_PREFIX = re.compile(r"[0-9]{0,4}|[0-9]{4}-(?:[0-9]{0,2}|[0-9]{2}-[0-9]{0,2})")


def date_prefix(model: type[ActiveRecord], attribute: Attribute, value: Any) -> bytes:
    """The canonical form of the start of a date, for ``startswith`` on a Date field."""
    if isinstance(value, str) and _DATE_PREFIX.fullmatch(value):
        return value.encode("ascii")
    return canonical(model, attribute, value)


def parse_lookup(model: type[ActiveRecord], key: str, value: Any) -> Condition:
    """``project__id__in=[...]`` -> Condition('project', 'in', (canonical ids...))."""
    name, *rest = key.split("__")
    attribute = _field(model, name, value)
    if isinstance(attribute, Pointer) and rest and rest[0] in ("id", "pk"):
        rest = rest[1:]  # the target's id is what a Pointer stores
    lookup_name = rest[0] if rest else "exact"
    lookup = LOOKUPS.get(lookup_name) if len(rest) <= 1 else None
    if attribute.is_stream:
        raise InvalidQuery(f"{model._meta.name}.{attribute.name} is a ByteStream: it lives "
                           "outside the record's hash and cannot be filtered on",
                           model=model._meta.name, field=attribute.name, value=value)
    if lookup is None or attribute.family not in lookup.families:
        valid = sorted(n for n, lk in LOOKUPS.items() if attribute.family in lk.families)
        raise InvalidQuery(f"{model._meta.name}.{attribute.name}: unsupported lookup "
                           f"{'__'.join(rest)!r}; valid lookups for a "
                           f"{type(attribute).__name__} are {valid}",
                           model=model._meta.name, field=attribute.name, value=value)
    field = attribute.name
    if lookup.arity == "bool" or (lookup.op == "eq" and value is None):
        if lookup.arity == "bool" and not isinstance(value, bool):
            raise InvalidQuery(f"{model._meta.name}.{field}__isnull takes True or False",
                               model=model._meta.name, field=field, value=value)
        return Condition(field, "isnull", (True if value is None else value,))
    if lookup.arity == "many":
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise InvalidQuery(f"{model._meta.name}.{field}__in takes a list of values",
                               model=model._meta.name, field=field, value=value)
        return Condition(field, "in", tuple(canonical(model, attribute, v) for v in value))
    if lookup.arity == "pair":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise InvalidQuery(f"{model._meta.name}.{field}__range takes (low, high)",
                               model=model._meta.name, field=field, value=value)
        low, high = value
        return Condition(field, "range", (canonical(model, attribute, low),
                                          canonical(model, attribute, high)))
    if lookup.op == "startswith" and isinstance(attribute, (UUID, Pointer)):
        return Condition(field, "startswith", (uuid_prefix(model, attribute, value),))
    if lookup.op == "startswith" and isinstance(attribute, Date):
        return Condition(field, "startswith", (date_prefix(model, attribute, value),))
    if lookup.op in TEXT_MATCHES:
        return _text_match(model, attribute, lookup.op, value)
    return Condition(field, lookup.op, (canonical(model, attribute, value),))


TEXT_MATCHES = frozenset({"endswith", "contains", "icontains", "iexact"})


def _text_match(model: type[ActiveRecord], attribute: Attribute, op: str,
                value: Any) -> Condition:
    """``name__icontains='Ann'`` -> Condition('name', 'icontains', (b'ann',)): the i-forms
    send the text with its ASCII letters lowered, as query.lua lowers the stored one."""
    meta = model._meta
    if not isinstance(attribute, Unicode):
        raise InvalidQuery(f"{meta.name}.{attribute.name}__{op} takes a Unicode field, not a "
                           f"{type(attribute).__name__}", model=meta.name,
                           field=attribute.name, value=value)
    if not isinstance(value, str):
        raise InvalidQuery(f"{meta.name}.{attribute.name}__{op} takes a str, not "
                           f"{short_repr(value)}", model=meta.name, field=attribute.name,
                           value=value)
    text = canonical(model, attribute, value)
    return Condition(attribute.name, op, (text.lower() if op[0] == "i" else text,))


def parse_order(model: type[ActiveRecord], spec: str) -> tuple[Attribute, bool]:
    """``'-name'`` -> (the name field, descending)."""
    if not isinstance(spec, str):
        raise InvalidQuery(f"{model._meta.name}: order_by takes field names, not "
                           f"{short_repr(spec)}", model=model._meta.name, value=spec)
    descending = spec.startswith("-")
    attribute = _field(model, spec.lstrip("-"))
    if attribute.family not in ORDERED_FAMILIES or attribute.is_stream:
        raise InvalidQuery(f"{model._meta.name}.{attribute.name} cannot be ordered",
                           model=model._meta.name, field=attribute.name, value=spec)
    return attribute, descending


# -- compiling -----------------------------------------------------------------------------
class _Keys:
    """KEYS of a query call: the id set, then each index key the plan names, once."""

    def __init__(self, ids_key: str):
        self.keys = [ids_key]

    def index(self, key: str) -> int:
        if key not in self.keys:
            self.keys.append(key)
        return self.keys.index(key) + 1


def _is_exact(attribute: Attribute, condition: Condition) -> bool:
    """Whether the index entries in range are exactly the records satisfying the
    condition, so the script need not check stored values (scores are doubles)."""
    if attribute.index_kind == "lex" or condition.op == "isnull":
        return True
    if attribute.family == "float":
        return True
    if attribute.family == "datetime":
        return all(abs(_micros(attribute.decode(v))) < EXACT_SCORE for v in condition.values)
    if isinstance(attribute, Integer):
        return all(abs(int(v)) < EXACT_SCORE for v in condition.values)
    return False  # Decimal: many digits share one double


def _micros(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _sources(state: QueryState, keys: _Keys) -> list[dict[str, Any]]:
    """Every candidate set a query could start from (query.lua picks the smallest)."""
    meta = state.model._meta
    sources: list[dict[str, Any]] = []
    for group_at, (negated, conditions) in enumerate(state.groups, start=1):
        if negated:
            continue
        for condition_at, condition in enumerate(conditions, start=1):
            source = _source(meta, keys, condition)
            if source is not None:
                source.update(condition=[group_at, condition_at], field=condition.field)
                sources.append(source)
    return sources


def _source(meta: Any, keys: _Keys, condition: Condition) -> dict[str, Any] | None:
    """The candidate set one condition names, if any: the given ids, a unique hash, a
    null set or an index range (``exact`` when the set alone decides the condition)."""
    attribute = meta.fields[condition.field]
    op = condition.op
    values = list(dict.fromkeys(condition.values)) if op in ("eq", "in") else list(
        condition.values)  # each value one range
    if condition.field == meta.pk_name and op in ("eq", "in"):
        return {"kind": "ids", "values": values, "exact": True}
    if attribute.unique and op in ("eq", "in"):
        key = keyspace.unique_key(meta.prefix, (condition.field,))
        return {"kind": "unique", "key": keys.index(key), "values": values,
                "family": attribute.family, "exact": True}
    if attribute.index and attribute.nullable and op == "isnull" and condition.values[0]:
        return {"kind": "null", "key": keys.index(keyspace.null_key(meta.prefix, condition.field)),
                "exact": True}
    if attribute.index and op in INDEXABLE[attribute.index_kind or ""]:
        key = keyspace.index_key(meta.prefix, condition.field)
        return {"kind": "index", "key": keys.index(key), "index": attribute.index_kind,
                "family": attribute.family, "op": op, "values": values,
                "exact": _is_exact(attribute, condition)}
    return None


def _loaded_fields(state: QueryState) -> tuple[list[str] | None, dict[str, bool] | None]:
    """The hash fields and streams to load (None: all), from only() / defer()."""
    meta = state.model._meta
    if state.only is None and not state.defer:
        return None, None
    wanted = set(state.only if state.only is not None else meta.fields) - set(state.defer)
    wanted.add(meta.pk_name)
    fields = [meta.pk_name] + [name for name, _ in meta.hash_fields
                               if name in wanted and name != meta.pk_name]
    if meta.optimistic_lock:  # a record loaded in part saves as any other: its version
        fields.append(keyspace.VERSION_FIELD)
    return fields, {name: True for name in meta.stream_names if name in wanted}


def _defaults(state: QueryState) -> dict[str, bytes]:
    """What the fields the script reads (conditions and order) read as when a record
    lacks them (one rule with hydration: ``Options.absent_values``)."""
    absent = state.model._meta.absent_values()
    if not absent:
        return absent
    used = {c.field for _, conditions in state.groups for c in conditions}
    used.update(spec.lstrip("-") for spec in state.order)
    return {name: value for name, value in absent.items() if name in used}


def _exact_below(attribute: Attribute) -> int:
    """Scores of the walked index with |score| below this are exact (-1: all are):
    doubles hold Integers and datetimes (µs) exactly within 2^53, no Decimal surely."""
    if attribute.index_kind == "lex" or attribute.family == "float":
        return -1
    if attribute.family == "datetime" or isinstance(attribute, Integer):
        return EXACT_SCORE
    return 0


def _walk(state: QueryState, keys: _Keys, order: list[tuple[Attribute, bool]]) -> Any:
    """What query.lua needs to walk the order field's index, or False."""
    if len(order) != 1 or not order[0][0].index:
        return False
    walked, meta = order[0][0], state.model._meta
    return [keys.index(keyspace.index_key(meta.prefix, walked.name)), walked.index_kind,
            walked.nullable and keys.index(keyspace.null_key(meta.prefix, walked.name)),
            _exact_below(walked)]


@dataclass
class _Pages:
    """The rows of a query answered in several calls, carried from call to call."""

    rows: list[Any] = dataclasses.field(default_factory=list)
    seen: set[bytes] = dataclasses.field(default_factory=set)
    kind: str = ""


Work = list[dict[str, int]]  # per call: candidates examined, commands run


@dataclass(frozen=True)
class _Compiled:
    """What every call of one query shares: its KEYS, plan, read schema and loaded fields."""

    keys: tuple[str, ...]
    plan: dict[str, Any]
    packed: bytes  # the plan of its first call
    schema: bytes
    models: list[type[ActiveRecord]]
    fields: list[str] | None


def _compile(state: QueryState, mode: str, is_envelope: bool) -> _Compiled:
    model = state.model
    meta = model._meta
    keys = _Keys(meta.ids_key)
    order = [parse_order(model, spec) for spec in state.order]
    fields, streams = _loaded_fields(state)
    schema, models = operations.read_schema(model)
    plan = {
        "envelope": is_envelope, "pk": meta.pk_name, "defaults": _defaults(state),
        "sources": _sources(state, keys),
        "groups": [[negated, [[c.field, meta.fields[c.field].family, c.op, list(c.values)]
                              for c in conditions]] for negated, conditions in state.groups],
        "order": [[attribute.name, attribute.family, descending]
                  for attribute, descending in order],
        "walk": _walk(state, keys, order), "offset": state.offset,
        "limit": -1 if state.limit is None else state.limit, "mode": mode,
        "fields": fields or False, "streams": streams if streams is not None else False,
        # all fields: read by position (no names in the reply), the reader's own order
        "row_fields": row_fields(model) if mode == "records" and fields is None else False,
        "budget": state.budget, "resume": False,
        "deadlines": keys.index(meta.deadlines_key),
    }
    return _Compiled(tuple(keys.keys), plan, pack(plan), schema, models, fields)


_compile_small = functools.lru_cache(maxsize=512)(_compile)
SMALL_PLAN = 64  # lookup values up to which a compiled query is kept for reuse


def _compiled(state: QueryState, mode: str) -> _Compiled:
    """The query compiled; small ones (most, in a service) from a cache."""
    is_envelope = state.model._meta.codec.is_envelope
    size = sum(len(c.values) for _, conditions in state.groups for c in conditions)
    if size <= SMALL_PLAN:
        return _compile_small(state, mode, is_envelope)
    return _compile(state, mode, is_envelope)


def compile_query(state: QueryState, mode: str, resume: Any = None,
                  pages: _Pages | None = None, work: Work | None = None,
                  prefix: str | None = None) -> Call | Any:
    """The query.lua call for ``mode`` ('records', 'ids', 'count' or 'explain'). With
    ``work``, each call's work counters are appended to it. A ``none()`` query needs no
    call: its result is returned as it is (executors pass a result through). On a
    cluster, one call per shard merged (``scatter.py``); ``prefix`` names one shard."""
    if state.empty:
        return 0 if mode == "count" else []
    meta = state.model._meta
    if prefix is None and on_cluster():
        from .scatter import compile_on_shards  # scatter builds on this module

        return compile_on_shards(state, mode, work)
    compiled = _compiled(state, mode)
    models, fields = compiled.models, compiled.fields
    packed = compiled.packed if resume is None else pack({**compiled.plan, "resume": resume})
    carried = _Pages() if pages is None else pages

    def decode(reply: list[Any]) -> Any:
        status = reply[0]
        if work is not None:
            work.append({"examined": int(reply[1][0]), "commands": int(reply[1][1])})
        if status == b"explain":
            return reply[2:]
        if status == b"done":
            return _decode_done(state, mode, models, reply[2:], fields)
        cursor = reply[2]
        _add_page(carried, reply[3:], cursor)
        if cursor and not _enough(state, carried):
            next_cursor = [False if part is None else part for part in cursor]
            if carried.kind == "walk":
                next_cursor[4] = len(carried.seen)  # rows found, each id once
            return compile_query(state, mode, next_cursor, carried, work, prefix)
        return _finish_pages(state, mode, carried)

    keys = compiled.keys if prefix is None else tuple(
        keyspace.rebase(key, meta.prefix, prefix) for key in compiled.keys)
    return Call(SCRIPTS["query"], keys,
                (compiled.schema, operations.check_depth(state.depth), prefix or meta.prefix,
                 packed), decode, meta.name)


def _add_page(pages: _Pages, rows: list[Any], cursor: Any) -> None:
    if not pages.kind:
        pages.kind = cursor[0].decode() if cursor else "gather"
    rows = [row if isinstance(row, list) else [row] for row in rows]  # an id alone
    pages.rows.extend(rows)
    pages.seen.update(row[0] for row in rows)


def _enough(state: QueryState, pages: _Pages) -> bool:
    """Whether an unordered query has the rows it needs (any will do); a walk knows
    when it is done itself."""
    return (state.limit is not None and not state.order and pages.kind == "gather"
            and len(pages.seen) >= state.offset + state.limit)


def _decode_done(state: QueryState, mode: str, models: list[type[ActiveRecord]],
                 reply: list[Any], fields: list[str] | None) -> Any:
    if mode == "count":
        return int(reply[0])
    count = int(reply[0])
    if mode == "ids":
        return [uuid.UUID(raw.decode("ascii")) for raw in reply[1:1 + count]]
    loaded = None
    if fields is not None:
        _, streams = _loaded_fields(state)
        loaded = set(fields) | set(streams or ())
    records = hydrate(models, reply[1:], roots=count, root_fields=loaded)
    return [record for record in records[:count] if record is not None]


def row_key(state: QueryState) -> Callable[[Sequence[Any]], Any]:
    """The sort key of rows ``(id, canonical order values...)``, as query.lua orders them:
    typed values, None first, each field in its direction, ties by id in the first
    field's direction."""
    order = [parse_order(state.model, spec) for spec in state.order]
    meta = state.model._meta

    def typed(attribute: Attribute, row: Sequence[Any], raw: Any) -> Any:
        if raw is None:
            return None
        try:
            return attribute.sort_key(attribute.decode(raw))
        except (ValueError, TypeError, ArithmeticError) as exc:
            key = meta.record_key(row[0].decode("ascii"))
            raise StoredDataError(
                f"{meta.name}.{attribute.name} at {key!r} holds {raw[:80]!r}, which is not a "
                f"{type(attribute).__name__}: {exc}", model=meta.name, field=attribute.name,
                key=key, value=raw) from None

    def compare(a: Sequence[Any], b: Sequence[Any]) -> int:
        for i, (attribute, descending) in enumerate(order):
            x, y = typed(attribute, a, a[i + 1]), typed(attribute, b, b[i + 1])
            if x != y:
                smaller = y is not None and (x is None or x < y)
                return (1 if smaller else -1) if descending else (-1 if smaller else 1)
        if a[0] == b[0]:
            return 0
        first_descending = bool(order) and order[0][1]
        return (1 if a[0] < b[0] else -1) if first_descending else (-1 if a[0] < b[0] else 1)

    return functools.cmp_to_key(compare)


def order_runs(rows: list[Any], key: Callable[[Sequence[Any]], Any]) -> list[Any]:
    """Rows of an index walk ``(id, value, group)`` in order: the walk gave them in
    score order; rows of one score (or the records without a value, met in no order)
    are sorted by value and id. Scores compare as numbers: Redis says '-0' and '0'."""
    ordered: list[Any] = []
    run: list[Any] = []
    run_key: Any = None
    for row in rows:
        group = row[2]
        this_key = None if group is None else (group if group == b"null" else float(group))
        if run and (this_key is None or this_key != run_key):
            ordered.extend(sorted(run, key=key) if len(run) > 1 else run)
            run = []
        if this_key is None:
            ordered.append(row)
        else:
            run.append(row)
            run_key = this_key
    ordered.extend(sorted(run, key=key) if len(run) > 1 else run)
    return ordered


def _finish_pages(state: QueryState, mode: str, pages: _Pages) -> Any:
    """The result of a query answered in pages: merge, order, slice, then hydrate."""
    rows: list[Any] = pages.rows
    key = None
    if pages.kind == "walk":
        rows = order_runs(rows, row_key(state))
    elif state.order:
        key = row_key(state)
    selected = merge.merge_rows([rows], key, offset=state.offset, limit=state.limit)
    ids = [uuid.UUID(row[0].decode("ascii")) for row in selected]
    if mode == "count":
        return merge.merge_counts([len(ids)])
    if mode == "ids":
        return ids
    if not ids:
        return []
    return _present(operations.compile_get_chunked(state.model, ids, state.depth))


def _present(call: Call | Gather) -> Any:
    """``call`` (a chain of get calls), its final list without the missing records."""
    return then(call, lambda records: [record for record in records if record is not None])


def id_lookup(model: type[ActiveRecord], lookups: dict[str, Any]) -> uuid.UUID | None:
    """The id when ``lookups`` is exactly ``id=...`` (or ``pk=...``): get.lua answers it alone."""
    meta = model._meta
    if len(lookups) != 1:
        return None
    (name, value), = lookups.items()
    if name not in ("pk", meta.pk_name):
        return None
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(canonical(model, meta.fields[meta.pk_name], value).decode())


def describe_source(source: dict[str, Any], keys: list[str]) -> str:
    kind = source["kind"]
    if kind == "ids":
        return f"{len(source['values'])} id(s) given"
    key = keys[source["key"] - 1]
    if kind == "index":
        how = "exactly" if source["exact"] else "then checked value by value"
        return f"{source['index']} index {key} for {source['op']} ({how})"
    return f"{kind} {key}"
