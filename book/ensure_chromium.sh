#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser check (book/check_site.py).
# Playwright's own browser download is not used (it needs a host outside the package registries).
set -euo pipefail
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium (apt-get install chromium) for the browser check ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null \
    || { echo "ensure_chromium: apt-get install chromium failed" >&2; exit 1; }
  exit 0
fi
echo "ensure_chromium: $chromium not found, and this machine cannot install it here (needs root and apt-get)." >&2
echo "  Install Debian's chromium (sudo apt-get install chromium), or point CHROMIUM at a Chromium binary." >&2
exit 1
