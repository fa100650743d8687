"""Every Python block of README.md runs against a real server, so the README cannot rot.

The rules, for whoever edits the README:

* A fenced block whose info string is ``python`` (or ``py``, ``python3``) is run. Any other
  fence (``sh``, ``lua``, none) is not Python and is not run; an info string that looks like
  Python but is none of those (``pycon``, ``Python ...``) is an error, not a silent skip.
* A Python block that is intentionally partial is marked with ``<!-- not-run -->`` on the line
  right before its fence (blank lines may separate them). A marker before anything else is an
  error, so a skip is always explicit and visible in the README.
* Blocks run in order per ``##`` section, sharing one namespace: a section reads as one script
  (a later block uses what an earlier one defined), and each section must import and define
  everything it uses. Each section runs in a fresh interpreter as ``__main__`` (as if the user
  ran it as a script), so model definitions and the global configuration of one section never
  meet another's (or the suite's).
* Every ``configure.connection_pool(...)`` call in a block is made as written first (so its
  arguments are checked), then (unless it names a Redis Cluster, which the block starts
  itself with ``LocalCluster``) pointed at the suite's server with
  ``configure.connection_pool(url=...)``; ``$REPOCKET_URL`` names that server too. The
  database is flushed before each section. A failure's traceback names README.md and the line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NOT_RUN = "<!-- not-run -->"
PYTHON_INFO = frozenset({"python", "py", "python3"})
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    section: str
    line: int  # README line of the block's first code line (1-based)
    info: str  # the fence's language, lower-cased ('' for none)
    source: str
    run: bool  # a Python block not marked not-run


class ReadmeFormatError(ValueError):
    """The README breaks a rule of this test (see the module docstring)."""


def _language(info: str, line_no: int) -> str:
    words = info.strip().lower().split()
    language = words[0] if words else ""
    if "py" in language and language not in PYTHON_INFO:
        raise ReadmeFormatError(f"README.md:{line_no}: fence {info.strip()!r} looks like Python "
                                f"but is not run: use one of {sorted(PYTHON_INFO)} or another "
                                "language")
    return language


def _closing(lines: list[str], start: int, fence: str) -> int:
    """Index of the line closing the fence opened at ``start`` (same character, as long)."""
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped.startswith(fence) and not stripped.strip(fence[0]):
            return j
    raise ReadmeFormatError(f"README.md:{start + 1}: fence {fence} is never closed")


def extract(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with its ``##`` section and whether it runs."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section, marker_line, i = "(before any section)", 0, 0
    while i < len(lines):
        line = lines[i]
        match = FENCE.match(line)
        if match:
            language = _language(match["info"], i + 1)
            end = _closing(lines, i, match["fence"])
            if marker_line and language not in PYTHON_INFO:
                raise ReadmeFormatError(f"README.md:{marker_line}: {NOT_RUN} before a block "
                                        "that is not Python (only Python blocks run)")
            indent = len(match["indent"])
            body = "".join(f"{code[indent:]}\n" for code in lines[i + 1:end])
            blocks.append(Block(section, i + 2, language, body,
                                run=language in PYTHON_INFO and not marker_line))
            marker_line, i = 0, end + 1
            continue
        if marker_line and line.strip():
            raise ReadmeFormatError(f"README.md:{marker_line}: {NOT_RUN} must come right "
                                    "before a Python block")
        if line.strip() == NOT_RUN:
            marker_line = i + 1
        elif line.startswith("## "):
            section = line[3:].strip()
        i += 1
    if marker_line:
        raise ReadmeFormatError(f"README.md:{marker_line}: {NOT_RUN} before no block")
    return blocks


def runnable_sections(blocks: list[Block]) -> dict[str, list[Block]]:
    sections: dict[str, list[Block]] = {}
    for block in blocks:
        if block.run:
            sections.setdefault(block.section, []).append(block)
    return sections


def _slug(section: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")


SECTIONS = runnable_sections(extract(README.read_text()))


# -- the runner, in a fresh interpreter: python -m tests.functional.test_readme URL BLOCKS.json --
def _redirecting(real: Callable[..., Any], url: str) -> Callable[..., Any]:
    def connection_pool(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)  # as the README wrote it: its arguments must be accepted
        if kwargs.get("cluster") or isinstance(client, RedisCluster):
            return client  # a cluster the block started itself: the suite's server is not one
        return real(url=url)  # then the suite's server (the codec it set, if any, stays)
    return connection_pool


def run_blocks(url: str, blocks_file: str) -> None:
    from repocket import configure

    setattr(configure, "connection_pool", _redirecting(configure.connection_pool, url))  # noqa: B010
    configure.connection_pool(url=url)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in json.loads(Path(blocks_file).read_text()):
        # blank lines first, so that a traceback names the README's own line numbers
        code = compile("\n" * (block["line"] - 1) + block["source"], str(README), "exec")
        exec(code, namespace)  # running the README is the point


# -- the tests -------------------------------------------------------------------------------
@pytest.mark.parametrize("section", list(SECTIONS), ids=[_slug(s) for s in SECTIONS])
def test_readme_section_runs(section: str, redis_url: str, tmp_path: Path) -> None:
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.flushdb()
    finally:
        raw.close()
    blocks_file = tmp_path / "blocks.json"
    blocks_file.write_text(json.dumps([asdict(b) for b in SECTIONS[section]]))
    env = {**os.environ, "REPOCKET_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.functional.test_readme", redis_url, str(blocks_file)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (
        f"README section {section!r} failed:\n{proc.stderr}\n{proc.stdout}")


def test_the_readme_sections_with_code_all_run() -> None:
    """The sections known to hold Python are run (a changed fence cannot drop one quietly)."""
    assert {"The tutorial, runnable", "Configuration", "asyncio", "Queries and indexes",
            "Checking and repairing data"} <= set(SECTIONS)
    assert sum(len(blocks) for blocks in SECTIONS.values()) >= 7


def test_extractor_rules() -> None:
    text = "\n".join([
        "intro", "```python", "a = 1", "```",
        "## One", "```sh", "pip install x", "```", "```python", "b = a", "```",
        "<!-- not-run -->", "", "```python", "partial(...", "```",
        "## Two", "  ```py", "  c = 3", "  ```", "```", "plain text", "```", "~~~lua", "x", "~~~",
    ])
    blocks = extract(text)
    assert [(b.section, b.line, b.info, b.source, b.run) for b in blocks] == [
        ("(before any section)", 3, "python", "a = 1\n", True),
        ("One", 7, "sh", "pip install x\n", False),
        ("One", 10, "python", "b = a\n", True),
        ("One", 15, "python", "partial(...\n", False),
        ("Two", 19, "py", "c = 3\n", True),
        ("Two", 22, "", "plain text\n", False),
        ("Two", 25, "lua", "x\n", False),
    ]
    assert list(runnable_sections(blocks)) == ["(before any section)", "One", "Two"]
    for bad in (["```pycon", ">>> 1", "```"],  # looks like Python, would not run
                ["<!-- not-run -->", "text", "```python", "x", "```"],  # marker not before it
                ["<!-- not-run -->", "```sh", "ls", "```"],  # marker on a non-Python block
                ["```python", "x"]):  # never closed
        with pytest.raises(ReadmeFormatError):
            extract("\n".join(bad))


if __name__ == "__main__":
    run_blocks(sys.argv[1], sys.argv[2])
