"""The ``repocket`` command (``DESCRIPTION`` below is its help text, plain for a terminal).

``repocket demo``: the tutorial, run against a throwaway server (or ``--url``).
``repocket check [--url URL] [--repair] MODULE...``: the consistency checker over every
model the modules define; exits 1 when problems remain, 2 when it cannot run (checking
works on a replica; repairing needs the primary). A mistake of the caller (a module that
cannot be imported, an unreachable server) is one line on stderr and exit status 2.
``repocket scripts [--codec C] [--full] MODULE...``: the Lua scripts generated for every
model the modules define (save, delete, append, get), libraries shown as includes
unless ``--full``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType

import redis.exceptions

from . import ActiveRecord, attributes, configure
from .core import luagen
from .errors import RepocketError
from .tools import check
from .tools.server import given_or_throwaway


class User(ActiveRecord):
    class Meta:
        namespace = "demo"

    name = attributes.Unicode()
    house_name = attributes.Unicode()
    email = attributes.Bytes()
    password = attributes.Bytes()
    metadata = attributes.JSON()



def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def demo(url: str | None) -> int:
    with given_or_throwaway(url, announce=print) as server_url:
        client = configure.connection_pool(url=server_url)
        if url and client.dbsize():
            print(f"{url} is not empty; the demo only runs on an empty database", file=sys.stderr)
            return 2
        harry = User.create(id="970773fa-4de1-11e5-86f4-6c4008a70392", name="Harry Potter",
                            email="harry@hogwards.uk", house_name="Gryffindor",
                            password=b"hermione42", metadata={"known_tricks": ["Protego"]})
        User.create(id="40997aa4-71fc-4ad3-b0d7-04c0fac6d6d8", name="Ron Weasley",
                    house_name="Gryffindor", email="ron@hogwards.uk", password=b"hermione42")
        keys = harry.save()
        print(">>> harry.save()\n", keys)
        print(">>> HGETALL", keys["hash"])
        for field, value in sorted(client.hgetall(keys["hash"]).items()):
            print(f"  {_text(field)}  {_text(value)}")
        loaded = User.objects.get(id=harry.id)
        assert loaded is not None
        print(">>> User.objects.get(id=...).metadata\n", loaded.metadata)
        ordered = User.objects.filter(house_name="Gryffindor").order_by("-name")
        print(">>> [u.name for u in User.objects.filter(house_name='Gryffindor')"
              ".order_by('-name')]\n", [u.name for u in ordered])
        print(">>> harry.delete()\n", loaded.delete())
        for user in User.objects.all():
            user.delete()
        configure.reset()
    return 0


DESCRIPTION = """\
repocket: an active-record for Redis where every model operation is one atomic Lua script.

commands:
  repocket demo [--url URL]
      run the tutorial against a throwaway redis-server (or an empty Redis at URL)
  repocket check [--url URL] [--repair] MODULE [MODULE ...]
      check (and with --repair, fix) the records, indexes and streams of every model
      the modules define
  repocket scripts [--codec C] [--full] MODULE [MODULE ...]
      print the Lua scripts generated for every model the modules define (save, delete,
      append, get); --full expands the library includes
"""
EPILOG = """\
exit status: 0 when all is well, 1 when problems remain, 2 for a usage error, a module
that cannot be imported or a Redis that cannot be reached (checking works on a replica;
repairing needs the primary).
"""
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class CommandError(Exception):
    """What stops the command (a module that cannot be imported, a refused repair...): one
    line on stderr, exit status 2."""


def import_module(name: str) -> ModuleType:
    """The module ``name`` (a dotted name, importable from the current directory)."""
    if name.endswith(".py") or os.sep in name or "/" in name:
        raise CommandError(f"{name!r} is a file path; give a module name, such as app.models")
    if not _MODULE_NAME.fullmatch(name):
        raise CommandError(f"{name!r} is not a module name")
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # the module, or something it imports, is not there
        raise CommandError(f"cannot import {name!r}: {exc}") from None


def check_models(url: str | None, module_names: Sequence[str], repair: bool) -> int:
    sys.path.insert(0, os.getcwd())
    models = [model for name in module_names
              for model in check.models_in(import_module(name))]
    if not models:
        print(f"no ActiveRecord models in {', '.join(module_names)}", file=sys.stderr)
        return 2
    if url:
        configure.connection_pool(url=url)
    clean = True
    for model in models:
        try:
            report = model.objects.check(repair=repair)
        except RepocketError as exc:  # e.g. --repair against a replica: ReadOnly
            raise CommandError(f"{model.__module__}.{model.__name__}: {exc}") from None
        print(f"{model.__module__}.{model.__name__}: {report.records} records, "
              f"{len(report.problems)} problems" + (f", {report.repaired} repaired"
                                                     if repair else ""))
        for problem in report.problems:
            print(f"  {problem}")
        clean = clean and report.ok
    return 0 if clean else 1


def print_scripts(module_names: Sequence[str], codec: str | None, full: bool) -> int:
    sys.path.insert(0, os.getcwd())
    models = [model for name in module_names
              for model in check.models_in(import_module(name))]
    if not models:
        print(f"no ActiveRecord models in {', '.join(module_names)}", file=sys.stderr)
        return 2
    for model in models:
        meta = model._meta
        codecs = tuple((codec or m._meta.codec.name) == "envelope"
                       for m in meta.reachable_models)
        for name, source in luagen.sources(meta, codecs):
            sha = luagen.compile_source(name, source).sha
            print(f"-- ===== {model.__module__}.{model.__name__} {name} (SHA1 {sha}) =====")
            print(luagen.link(source) if full else luagen.readable(source))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="repocket", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the tutorial")
    demo_parser.add_argument("--url", help="an existing, empty Redis (default: start one)")
    check_parser = commands.add_parser("check", help="verify records, indexes and streams")
    check_parser.add_argument("modules", nargs="+", help="modules defining the models")
    check_parser.add_argument("--url", help="the Redis to check (default: $REPOCKET_URL, "
                              "else redis://localhost:6379/0)")
    check_parser.add_argument("--repair", action="store_true", help="fix what can be fixed")
    scripts_parser = commands.add_parser("scripts", help="print the models' generated Lua")
    scripts_parser.add_argument("modules", nargs="+", help="modules defining the models")
    scripts_parser.add_argument("--codec", choices=("envelope", "compact"),
                                help="the codec (default: each model's own)")
    scripts_parser.add_argument("--full", action="store_true",
                                help="expand the library includes")
    args = parser.parse_args(argv)
    try:
        if args.command == "scripts":
            return print_scripts(args.modules, args.codec, args.full)
        if args.command == "check":
            return check_models(args.url, args.modules, args.repair)
        return demo(args.url)
    except (CommandError, RepocketError, redis.exceptions.RedisError) as exc:
        print(f"repocket {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
