"""The built wheel (not an editable install) carries the Lua scripts and the licence, and
works."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = "repocket/lua/probe_subfolder/_probe.lua"  # stands for a Lua library in a subfolder

SMOKE = """
import pathlib, sys, repocket
from repocket import ActiveRecord, attributes, configure
assert pathlib.Path(repocket.__file__).is_relative_to(sys.prefix), repocket.__file__
assert len(list((pathlib.Path(repocket.__file__).parent / "lua").glob("*.lua"))) >= 5
configure.connection_pool(url=sys.argv[1])
class Wheel(ActiveRecord):
    class Meta:
        namespace = "wheel"
    name = attributes.Unicode()
    log = attributes.ByteStream()
w = Wheel.create(name="from the wheel", log=b"ok")
got = Wheel.objects.get(id=w.id)
print(got.name, got.log.decode(), w.delete())
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from a copy of the sources with one more Lua file in a subfolder of
    repocket/lua, and the build's output."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "repocket", source / "repocket",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (source / PROBE).parent.mkdir()
    (source / PROBE).write_text("return 1\n")
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist),
                            str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return next(dist.glob("repocket-*.whl")), build.stdout + build.stderr


def test_the_wheel_ships_the_licence_and_every_lua_file(built: tuple[Path, str]) -> None:
    wheel, output = built
    names = set(zipfile.ZipFile(wheel).namelist())
    lua = {path.relative_to(ROOT).as_posix() for path in (ROOT / "repocket/lua").rglob("*.lua")}
    assert len(lua) >= 5 and lua | {PROBE} <= names
    assert "repocket-0.2.0.dist-info/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read("repocket-0.2.0.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    licence = zipfile.ZipFile(wheel).read("repocket-0.2.0.dist-info/licenses/LICENSE").decode()
    assert licence.startswith("MIT License") and "repocket developers" in licence
    assert "License classifiers are deprecated" not in output
    assert "project.license` as a TOML table is deprecated" not in output


def test_built_wheel_installs_and_runs(tmp_path: Path, redis_url: str,
                                       built: tuple[Path, str]) -> None:
    wheel, _output = built
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True)  # dependencies from this interpreter
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    result = subprocess.run([python, "-c", SMOKE, redis_url], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["from", "the", "wheel", "ok", "2"]
