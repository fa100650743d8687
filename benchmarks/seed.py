"""The tutorial's User: repocket save/get against raw redis-py HSET/HGETALL, same run.

    python -m benchmarks.seed [--url URL] [--n 3000] [--codec compact|envelope]

repocket's save also keeps the model's id set and checks key types before
writing, and its get builds a typed instance; the raw side writes and reads a
plain hash. Medians of 5 passes of ``--n`` operations each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import redis

from repocket import ActiveRecord, attributes, configure
from repocket.tools.server import given_or_throwaway


class User(ActiveRecord):
    class Meta:
        namespace = "bench-seed"

    name = attributes.Unicode()
    house_name = attributes.Unicode()
    email = attributes.Bytes()
    password = attributes.Bytes()
    metadata = attributes.JSON()


def rate(n: int, operation: Callable[[int], object]) -> float:
    passes = []
    for _ in range(5):
        start = time.perf_counter()
        for i in range(n):
            operation(i)
        passes.append(n / (time.perf_counter() - start))
    return statistics.median(passes)


def run(url: str, n: int, codec: str) -> None:
    client: redis.Redis = configure.connection_pool(url=url)
    User._meta.codec_name = codec
    users = [User(name="Harry Potter", house_name="Gryffindor", email="harry@hogwards.uk",
                  password=b"$2b$10$" + b"x" * 53, metadata={"known_tricks": ["Protego"]})
             for _ in range(n)]
    save = rate(n, lambda i: users[i].save())
    get = rate(n, lambda i: User.objects.get(id=users[i].id))
    raw = {"name": "Harry Potter", "house_name": "Gryffindor", "email": "harry@hogwards.uk",
           "password": b"$2b$10$" + b"x" * 53, "metadata": '{"known_tricks": ["Protego"]}'}
    hset = rate(n, lambda i: client.hset(f"bench-seed:{i}", mapping=raw))
    hgetall = rate(n, lambda i: client.hgetall(f"bench-seed:{i}"))
    print(f"codec {codec}, n={n}: save {save:,.0f}/s vs HSET {hset:,.0f}/s ({save / hset:.2f}x); "
          f"get {get:,.0f}/s vs HGETALL {hgetall:,.0f}/s ({get / hgetall:.2f}x)")
    client.delete(*(f"bench-seed:{i}" for i in range(n)))
    for user in users:
        user.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an empty Redis (default: start a throwaway one)")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--codec", choices=["compact", "envelope"], default="compact")
    args = parser.parse_args()
    with given_or_throwaway(args.url) as url:
        run(url, args.n, args.codec)


if __name__ == "__main__":
    main()
