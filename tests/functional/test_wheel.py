"""The built wheel (not an editable install) carries the Lua scripts and works."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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


def test_built_wheel_installs_and_runs(tmp_path: Path, redis_url: str) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("repocket-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True)  # dependencies from this interpreter
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    result = subprocess.run([python, "-c", SMOKE, redis_url], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["from", "the", "wheel", "ok", "2"]
