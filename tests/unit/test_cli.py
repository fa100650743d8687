"""The ``repocket`` command's help and its errors: plain text, one line, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from repocket.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "repocket", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_help_is_plain_text() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and ":mod:" not in result.stdout
    assert "repocket check [--url URL] [--repair] MODULE" in result.stdout
    assert "exit status" in result.stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["check", "no_such_module_anywhere"], "cannot import 'no_such_module_anywhere'"),
    (["check", "tests/functional/models.py"], "is a file path"),
    (["check", "not a module"], "is not a module name"),
    (["check", "--url", "redis://127.0.0.1:1/0", "tests.functional.models"],
     "connecting to 127.0.0.1:1"),
])
def test_a_mistake_is_one_line_and_exit_status_2(argv: list[str], message: str) -> None:
    result = run(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("repocket check: error: ") and message in lines[0]


def test_main_returns_2_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "no_such_module_anywhere"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
