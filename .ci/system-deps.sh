#!/usr/bin/env bash
# System packages the tests use: Debian's chromium (browser tests). Installed only when missing and only
# when we may (root); otherwise the browser tests skip with a visible reason.
set -uo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "could not install chromium: browser tests will be skipped"
  else
    echo "chromium is not installed and cannot be installed here: browser tests will be skipped"
  fi
fi
exit 0
