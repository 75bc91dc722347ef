#!/usr/bin/env bash
# Type-check the package as it is installed (leadscore, leadscore.features, leadscore.model, leadscore.serve):
# the folders map to one namespace in pyproject, which mypy cannot follow from the source tree, so it reads
# a tree of symlinks under build/typecheck that has the installed layout. Settings: [tool.mypy] in pyproject
# (strict on features and model). `make typecheck` runs it whole; `bash .ci/mypy.sh model serve` shows only
# the errors under model/ and serve/, and `bash .ci/mypy.sh leadscore` those of leadscore/'s own files (the
# CLI, settings, demo data), not of the three folders the symlink tree puts under it.
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
patterns=()
for area in "$@"; do
  case $area in
    leadscore) patterns+=('^leadscore/(cli/|demo/|[^/]+\.py:)') ;;
    *) patterns+=("^leadscore/$area/") ;;
  esac
done
pattern=$(IFS='|'; echo "${patterns[*]}")
shown=$(grep -E "$pattern" <<<"$out" || true)
[ -z "$shown" ] && { echo "no errors under: $*"; exit 0; }
echo "$shown"; echo "$(grep -c ': error:' <<<"$shown") errors under: $*"; exit 1
