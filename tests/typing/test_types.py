"""The static types a user sees: ``mypy --strict`` on tests/typing/user_module.py must
reveal, on each ``reveal_type`` line, the type written at its end (models inferred
through ``Model.objects``, querysets and their async forms; field values from their
descriptors, ``| None`` with ``null=True``), report the errors the module marks
(a misspelt field, a wrong value type), and nothing else. No mypy plugin is used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")  # in the lint extra, which CI installs

MODULE = Path(__file__).with_name("user_module.py")
_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>note|error): (?P<text>.*)$")
_PREFIX = "tests.typing.user_module."


def expected() -> tuple[dict[int, str], dict[int, str]]:
    reveals, errors = {}, {}
    for number, line in enumerate(MODULE.read_text().splitlines(), 1):
        code, _, comment = line.partition("  # ")
        if "reveal_type(" in code:
            reveals[number] = comment.strip()
        elif comment.startswith("error: "):
            errors[number] = comment[len("error: "):].strip()
    return reveals, errors


def mypy_output() -> list[tuple[int, str, str]]:
    stdout, stderr, _status = mypy_api.run(
        ["--strict", "--no-error-summary", "--show-absolute-path", "--no-pretty",
         "--hide-error-context", str(MODULE)])
    assert not stderr, stderr
    found = []
    for line in stdout.splitlines():
        match = _LINE.match(line)
        assert match, f"unexpected mypy output: {line}"
        assert Path(match["path"]) == MODULE, f"mypy reports on another file: {line}"
        found.append((int(match["line"]), match["kind"], match["text"]))
    return found


@pytest.fixture(scope="module")
def reported() -> list[tuple[int, str, str]]:
    return mypy_output()


def _short(type_text: str) -> str:
    return (type_text.replace(_PREFIX, "").replace("builtins.", "")
            .replace("repocket.api.manager.", "").replace("repocket.api.queryset.", "")
            .replace("repocket.api.result.", "").replace("typing.", ""))


def test_every_reveal_type_shows_the_expected_type(reported: list[tuple[int, str, str]]) -> None:
    reveals, _ = expected()
    revealed = {line: _short(text[len('Revealed type is "'):-1]) for line, kind, text in reported
                if kind == "note" and text.startswith("Revealed type is")}
    assert revealed == reveals


def test_the_marked_lines_are_errors_and_no_other(reported: list[tuple[int, str, str]]) -> None:
    _, errors = expected()
    found = {line: text for line, kind, text in reported if kind == "error"}
    assert sorted(found) == sorted(errors), found
    for line, words in errors.items():
        assert words in found[line], (line, found[line])

