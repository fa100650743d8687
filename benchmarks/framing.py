"""Which framing should read replies use: nested RESP arrays or one cmsgpack blob?

Measures the Python-side cost of receiving N hydrated records both ways from the
same Lua data, against a throwaway redis-server (or --url). The figure is quoted
in the README's "Storage format" section.

    python -m benchmarks.framing [--url URL] [--records 1 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import msgpack
import redis

from repocket.tools.server import given_or_throwaway

BUILD = """
local n = tonumber(ARGV[1])
local records = {}
for i = 1, n do
  local flat = {}
  for f = 1, 8 do
    flat[#flat + 1] = 'field' .. f
    flat[#flat + 1] = string.rep('v', 24) .. i
  end
  records[i] = {1, '970773fa-4de1-11e5-86f4-6c4008a70392', flat, {'stdout bytes', false}}
end
"""
RESP = "#!lua flags=no-writes\n" + BUILD + "return records"
MSGPACK = "#!lua flags=no-writes\n" + BUILD + "return cmsgpack.pack(records)"


def per_call_usec(client: redis.Redis, sha: str, records: int, unpack: bool, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        reply = client.evalsha(sha, 0, records)
        if unpack:
            msgpack.unpackb(reply, raw=True)
    return (time.perf_counter() - start) / calls * 1e6


def run(url: str, sizes: list[int], repeat: int) -> None:
    client = redis.Redis.from_url(url)
    resp_sha, msgpack_sha = client.script_load(RESP), client.script_load(MSGPACK)
    print(f"{'records':>8} {'RESP usec':>10} {'msgpack usec':>13} {'msgpack/RESP':>13}")
    for records in sizes:
        calls = max(20, 4000 // records)
        resp = statistics.median(per_call_usec(client, resp_sha, records, False, calls)
                                 for _ in range(repeat))
        packed = statistics.median(per_call_usec(client, msgpack_sha, records, True, calls)
                                   for _ in range(repeat))
        print(f"{records:>8} {resp:>10.1f} {packed:>13.1f} {packed / resp:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--records", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with given_or_throwaway(args.url) as url:
        run(url, args.records, args.repeat)


if __name__ == "__main__":
    main()
