"""The wheel installs into a fresh venv under the `leadscore` namespace, with no bare `model` package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_into_a_fresh_venv_and_cli_works():
    uv = Path(sys.executable).parent / "uv"
    done = subprocess.run(
        ["bash", str(REPO / ".ci/wheel-check.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "UV": str(uv)},
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "wheel ok" in done.stdout
