#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv, and prove the namespace: `leadscore --help` works and no
# bare `model`, `features` or `serve` package is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
out=$(mktemp -d)
"$UV" build --wheel --out-dir "$out" >/dev/null 2>&1
"$UV" venv --quiet --python python3 "$out/venv"
"$UV" pip install --quiet --python "$out/venv/bin/python" -c constraints.txt "$out"/leadscore-*.whl
"$out/venv/bin/leadscore" --help >/dev/null
cd "$out"  # away from the source tree, so only what the wheel installed can be imported
"$out/venv/bin/python" - "$out"/leadscore-*.whl <<'PY'
import importlib.util, sys, zipfile
tops = {name.split("/")[0] for name in zipfile.ZipFile(sys.argv[1]).namelist()}
assert all(t == "leadscore" or t.startswith("leadscore-") for t in tops), f"unexpected top-level entries: {tops}"
for bare in ("model", "features", "serve"):
    assert importlib.util.find_spec(bare) is None, f"a bare package {bare!r} is installed"
import leadscore.features.build, leadscore.model.scoring, leadscore.serve.app  # noqa: F401
print("wheel ok: leadscore.* importable, no bare packages")
PY
