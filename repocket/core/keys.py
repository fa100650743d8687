"""The only module that builds Redis key names.

Layout (as repocket 0.1 documented it)::

    repocket:<namespace>:<Class>:<id>                record hash
    repocket:<namespace>:<Class>:<id>:field:<name>   one string per ByteStream field
    repocket:<namespace>:<Class>:ids                 set of every saved id (never KEYS)
    repocket:<namespace>:<Class>:idx:<field>         sorted set: the field's index
    repocket:<namespace>:<Class>:idx:<field>:null    set: ids whose indexed field is None
    repocket:<namespace>:<Class>:uniq:<f>[+<g>...]   hash: unique value -> id
    repocket:<namespace>:<Class>:ttl                 sorted set: id -> deadline (ms since 1970)
    repocket:<namespace>:<Class>:ttl:entries         hash: id -> msgpack of the values its index
                                                     entries and unique claims were written with
    repocket:<namespace>:<Class>:changes             stream: the change feed (Meta.changes)

A record hash may hold one field besides the model's: ``VERSION_FIELD``, the version
counter of ``Meta.optimistic_lock`` (never a field name: those are Python identifiers).

On a Redis Cluster each model is split into shards (``Meta.shards``, 16 by default)
and every key of one shard starts with the shard's hash tag, so all of them live in
one slot (one node) and a record's save/get/delete/append stays one script call::

    {repocket:<namespace>:<Class>:<shard>}:<id>      and so on, as above
    {repocket:<namespace>:<Class>:<shard>}:ids       the shard's ids
    {repocket:<namespace>:<Class>:<shard>}:idx:...   the shard's index entries
    {repocket:<namespace>:<Class>:<shard>}:fences    hash: revoked claim tokens (a model
                                                     with unique constraints; claims.py)
    {repocket:<namespace>:<Class>:<shard>}:tokens    hash: '<id>\\0<fields>' -> the claim
                                                     token its record holds the value by

A record's shard is a stable hash of its id (:func:`shard_of`).

``<namespace>`` is the model's module unless ``Meta.namespace`` says otherwise.
Ids are canonical UUIDs, so no id can contain ``:``, ``*``, ``{`` or spaces, and
a record's keys always live under its model's prefix.
"""

from __future__ import annotations

import re
import zlib

ROOT = "repocket"
IDS_SUFFIX = "ids"
CHANGES_SUFFIX = "changes"
# The hash field holding a record's version under Meta.optimistic_lock: not an identifier,
# so no declared field (an identifier not starting with '_') can ever be named so.
VERSION_FIELD = ":version"
_NAME_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def is_valid_name_part(text: str) -> bool:
    """True if ``text`` may be used as a namespace or class segment of a key."""
    return bool(_NAME_PART.fullmatch(text)) and len(text) <= 200


def model_prefix(namespace: str, class_name: str) -> str:
    """``repocket:<namespace>:<Class>``: every key of the model starts with it."""
    return f"{ROOT}:{namespace}:{class_name}"


DEFAULT_SHARDS = 16  # a model's shards on a cluster when Meta.shards does not say
MAX_SHARDS = 1024


def shard_of(record_id: str, shards: int) -> int:
    """The shard of a record on a cluster: CRC-32 of its id text (the same in every process
    and every Python version, unlike ``hash``), modulo the model's shard count."""
    return zlib.crc32(record_id.encode("ascii")) % shards


def shard_prefix(prefix: str, shard: int) -> str:
    """The prefix of one shard's keys on a cluster: the model prefix and the shard number
    as one hash tag, so the shard's keys share a slot and other shards (and models) spread
    over other slots. Name parts hold no ``{`` or ``}``, so the tag is exactly this."""
    return "{" + f"{prefix}:{shard}" + "}"


def rebase(key: str, prefix: str, new_prefix: str) -> str:
    """``key``, one of the model keys under ``prefix``, under ``new_prefix`` instead (the
    same index or id set of one shard)."""
    if not key.startswith(prefix + ":"):
        raise ValueError(f"{key!r} is not under {prefix!r}")
    return new_prefix + key[len(prefix):]


CLAIM_BUCKETS = 1024  # claim hashes per unique constraint on a cluster (slots they spread over)


def claim_key(prefix: str, field_names: tuple[str, ...], bucket: int) -> str:
    """On a cluster, the hash holding the global claims of one unique constraint's values
    of one bucket (a stable hash of the value): a hash tag of its own, so the claim lives
    in the slot of the value, wherever the record lives."""
    return "{" + f"{prefix}:uniq:{'+'.join(field_names)}:{bucket}" + "}"


def fence_key(shard_prefix_: str) -> str:
    """On a cluster, the hash of one shard's revoked claim tokens (token -> ms revoked):
    a write of the shard's records relying on one of them is refused (core/claims.py)."""
    return f"{shard_prefix_}:fences"


def tokens_key(shard_prefix_: str) -> str:
    """On a cluster, the hash of the claim tokens one shard's records hold their unique
    values by ('<id>\\0<fields>' -> token): retired when the record moves off the value
    (core/claims.py)."""
    return f"{shard_prefix_}:tokens"


def record_key(prefix: str, record_id: str) -> str:
    return f"{prefix}:{record_id}"


def stream_key(hash_key: str, field_name: str) -> str:
    return f"{hash_key}:field:{field_name}"


def stream_field(key: str) -> str:
    """The ByteStream field a stream key belongs to ('' for any other key)."""
    head, sep, name = key.rpartition(":field:")
    return name if sep and head else ""


def index_key(prefix: str, field_name: str) -> str:
    """The sorted set indexing one field (see lua/_index.lua)."""
    return f"{prefix}:idx:{field_name}"


def null_key(prefix: str, field_name: str) -> str:
    """The set of ids whose indexed field is None."""
    return f"{prefix}:idx:{field_name}:null"


def unique_key(prefix: str, field_names: tuple[str, ...]) -> str:
    """The hash of values to ids that enforces one unique constraint."""
    return f"{prefix}:uniq:{'+'.join(field_names)}"


def unique_fields(key: str) -> list[str]:
    """The fields of the unique constraint a unique hash enforces."""
    return key.rsplit(":uniq:", 1)[-1].split("+")


_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def scan_pattern(prefix: str) -> str:
    """A SCAN MATCH pattern for every key of a model (name parts hold no glob characters)."""
    return f"{prefix}:*"


def parse_record_key(prefix: str, key: str) -> str | None:
    """The id, when ``key`` is the hash key of one of the model's records."""
    found = re.fullmatch(rf"{re.escape(prefix)}:({_UUID})", key)
    return found.group(1) if found else None


def parse_stream_key(prefix: str, key: str) -> tuple[str, str] | None:
    """(record hash key, field), when ``key`` is a ByteStream key of the model."""
    found = re.fullmatch(rf"({re.escape(prefix)}:{_UUID}):field:(.+)", key)
    return (found.group(1), found.group(2)) if found else None


def ids_key(prefix: str) -> str:
    return f"{prefix}:{IDS_SUFFIX}"


def changes_key(prefix: str) -> str:
    """The stream of the model's change feed (``Meta.changes``)."""
    return f"{prefix}:{CHANGES_SUFFIX}"


def deadlines_key(prefix: str) -> str:
    """The sorted set of the records that expire: member id, score its deadline in ms."""
    return f"{prefix}:ttl"


def expiry_entries_key(prefix: str) -> str:
    """The hash of what an expiring record's index entries and unique claims were written
    with (id -> msgpack of its tracked values): Redis expires the record's hash at its
    deadline, and the sweep that removes the entries afterwards reads them here."""
    return f"{prefix}:ttl:entries"
