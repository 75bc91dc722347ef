#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv, and prove the namespace: `leadscore --help` works and no
# bare `model`, `features` or `serve` package is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
.venv/bin/uv build --wheel --out-dir "$out" >/dev/null 2>&1
.venv/bin/uv venv --quiet --python python3 "$out/venv"
.venv/bin/uv pip install --quiet --python "$out/venv/bin/python" -c constraints.txt "$out"/leadscore-*.whl
"$out/venv/bin/leadscore" --help >/dev/null
"$out/venv/bin/python" - <<'PY'
import importlib.util, sys
for bare in ("model", "features", "serve"):
    assert importlib.util.find_spec(bare) is None, f"a bare package {bare!r} is installed"
import leadscore.features.build, leadscore.model.scoring, leadscore.serve.app  # noqa: F401
print("wheel ok: leadscore.* importable, no bare packages")
PY
