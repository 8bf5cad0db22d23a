#!/usr/bin/env bash
# System packages the tests use: Debian's chromium (headless check of report.html).
# Installed here, by the test setup, never downloaded by a test tool; skipped if present.
set -uo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the report test ..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the HTML browser test will be skipped" >&2
else
  echo "warning: chromium is missing, so the HTML browser test will be skipped (apt-get install chromium runs it)" >&2
fi
exit 0
