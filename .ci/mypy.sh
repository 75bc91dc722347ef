#!/usr/bin/env bash
# Type-check the package as it is installed (leadscore, leadscore.features, leadscore.model, leadscore.serve):
# the folders map to one namespace in pyproject, which mypy cannot follow from the source tree, so it reads
# a tree of symlinks under build/typecheck that has the installed layout. Settings: [tool.mypy] in pyproject
# (strict on features and model). `bash .ci/mypy.sh model` shows only the errors under model/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=build/typecheck/leadscore
rm -rf build/typecheck && mkdir -p "$tree"
for f in "$root"/leadscore/*; do ln -s "$f" "$tree/"; done
for p in features model serve; do ln -s "$root/$p" "$tree/$p"; done
cd build/typecheck
if [ $# -eq 0 ]; then
  exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" leadscore
fi
out=$("$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" leadscore || true)
pattern=$(printf '^leadscore/%s/|' "$@")
shown=$(grep -E "${pattern%|}" <<<"$out" || true)
[ -z "$shown" ] && { echo "no errors under: $*"; exit 0; }
echo "$shown"; echo "$(grep -c ': error:' <<<"$shown") errors under: $*"; exit 1
