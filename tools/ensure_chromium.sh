#!/usr/bin/env bash
# The browser test drives Debian's chromium with Playwright (no browser download at run time).
# Install it when missing and we are root (as in CI); otherwise the browser test skips.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser test..."
  apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
    || echo "could not install chromium: the browser test will skip"
else
  echo "chromium is not installed (needs root): the browser test will skip"
fi
exit 0
