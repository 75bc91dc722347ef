"""`make`'s pyspark wheelhouse (Makefile, `PYSPARK_WHEEL`): a build that fails fails make, and no build
leaves its scratch directory behind (a half-written wheel of ~450 MB a time). Offline: pip reads a local
folder only."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERSION = "9.9.9"  # no such pyspark: only the local wheel below has it


def make_wheel(wheelhouse: Path, links: Path | None) -> subprocess.CompletedProcess[str]:
    if not (REPO / ".venv" / "bin" / "uv").exists():
        pytest.skip("needs the repository's .venv (make install-test)")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links or "")}
    target = wheelhouse / f"pyspark-{VERSION}-py2.py3-none-any.whl"
    return subprocess.run(
        ["make", "-C", str(REPO), f"WHEELHOUSE={wheelhouse}", f"PYSPARK={VERSION}", str(target)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_a_pyspark_wheel_that_cannot_be_built_fails_make_and_leaves_nothing(tmp_path):
    # given no index and nowhere to find pyspark, when make builds the wheel
    done = make_wheel(tmp_path / "wheelhouse", None)
    # then make fails (it went on before, and uv built pyspark from source on every install)
    assert done.returncode != 0, done.stdout + done.stderr
    assert list((tmp_path / "wheelhouse").iterdir()) == []


def test_a_built_pyspark_wheel_lands_in_the_wheelhouse_alone(tmp_path):
    # given a pyspark wheel pip can find (as it would build one from the index)
    links = tmp_path / "links"
    links.mkdir()
    info = f"pyspark-{VERSION}.dist-info"
    with zipfile.ZipFile(links / f"pyspark-{VERSION}-py2.py3-none-any.whl", "w") as z:
        z.writestr("pyspark/__init__.py", "")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: pyspark\nVersion: {VERSION}\n")
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py2-none-any\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    # when make builds the wheel
    done = make_wheel(tmp_path / "wheelhouse", links)
    # then it is there, and nothing else is
    assert done.returncode == 0, done.stdout + done.stderr
    assert [p.name for p in (tmp_path / "wheelhouse").iterdir()] == [
        f"pyspark-{VERSION}-py2.py3-none-any.whl"
    ]
