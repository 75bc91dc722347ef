#!/usr/bin/env bash
# System packages the tests use: Debian's chromium (browser tests) and a Java 17 runtime (the Spark tests,
# tests/test_spark.py: pyspark 4 runs on Java 17 or later). Installed only when missing and only when we
# may (root); otherwise those tests skip with a visible reason.
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  # `java -version` prints e.g. 'openjdk version "17.0.15" 2025-04-15' (to stderr)
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ -n "$major" ] && [ "$major" -ge 17 ]
}
java_ok || missing+=(openjdk-17-jre-headless)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} for the browser and Spark tests..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "could not install ${missing[*]}: the tests that need them will be skipped"
  else
    echo "${missing[*]} not installed and cannot be installed here: the tests that need them will be skipped"
  fi
fi
java_ok || echo "no Java 17+: the Spark tests will be skipped"
exit 0
