#!/usr/bin/env bash
# `make browser`: install a Chromium for the browser checks of the course site
# (book/check_site.py). Nothing else in the project installs one: the checks use the one
# tools/resources.py finds ($CHROMIUM, Playwright's own, Debian's, one on PATH) or are
# skipped with a line that says so.
#   as root on Debian (a container, CI, .ci/run): Debian's chromium package (apt-get);
#   otherwise: Playwright's own Chromium in ~/.cache/ms-playwright (no root needed; it
#   comes from Playwright's download server, not a package registry).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if "$python" tools/resources.py --have chromium >/dev/null; then
  "$python" tools/resources.py | grep -i chromium
  exit 0
fi
debian=""
if [ -r /etc/os-release ]; then debian="$(. /etc/os-release && echo "${ID:-}")"; fi
if [ "$(id -u)" = 0 ] && [ "$debian" = debian ] && command -v apt-get >/dev/null; then
  echo "browser: apt-get install chromium (Debian's package) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y --no-install-recommends chromium
else
  echo "browser: $python -m playwright install chromium (into ~/.cache/ms-playwright) ..."
  "$python" -m playwright install chromium
fi
"$python" tools/resources.py --have chromium && "$python" tools/resources.py | grep -i chromium
