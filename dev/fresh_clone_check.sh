#!/usr/bin/env bash
# The README's promise, checked (.ci/run): in a fresh clone with nothing beside it, run by a
# user who is not root, with no browser, `make install-book` (the book extra brings
# Playwright, so the browser is what is missing) and the quick part of the suite
# (tools/test_all.sh quick) pass, and each missing resource is named in one line.
#   * a clone of HEAD (committed work only) in a new folder under /tmp: no shared/ above it;
#   * as root: run by an unprivileged user (hingeabl-ci, created when missing) in a private
#     mount namespace where each Chromium on PATH is an empty file that is no program; as
#     another user: $CHROMIUM names no program and Playwright's browser cache is empty;
#   * a clean environment: HOME, USER, PATH (/usr/local/bin:/usr/bin:/bin), LANG and the
#     machine's PIP_* settings.
# Passes when that run passes and printed exactly one `skipped:` line for each resource
# of tools/resources.py (Re-DocRED, MiniLM, a Chromium, the paper's text).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d /tmp/hingeabl-fresh.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
clone="$tmp/hingeabl-nb" log="$tmp/run.log"
git -C "$root" diff --quiet HEAD -- || echo "fresh clone: uncommitted changes are NOT in the clone (HEAD is)"
git clone -q --no-checkout "$root" "$clone"
git -C "$clone" checkout -q "$(git -C "$root" rev-parse HEAD)"
touch "$tmp/no-browser" # mode 644: not a program
steps='cd "$CLONE" && make install-book && PATH="$CLONE/.venv/bin:$PATH" bash tools/test_all.sh quick'
# this machine's pip settings (PIP_* variables: an index, a local wheel folder) carry over
mapfile -t pip_env < <(env | grep '^PIP_' || true)
clean=(env -i LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin CLONE="$clone" "${pip_env[@]}")
if [ "$(id -u)" = 0 ]; then
  user=hingeabl-ci
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  home="$(getent passwd "$user" | cut -d: -f6)"
  chown -R "$user:" "$tmp"
  hide=""
  for b in chromium chromium-browser google-chrome; do
    p="$(command -v "$b" || true)"
    if [ -n "$p" ]; then hide+="mount --bind $tmp/no-browser $(readlink -f "$p") && "; fi
  done
  echo "fresh clone: $clone, user $user, hidden browsers: ${hide:-none}"
  run() {
    unshare --mount --propagation private -- sh -c "${hide}exec setpriv --reuid=$user \
      --regid=$user --init-groups $(printf '%q ' "${clean[@]}") HOME=$home USER=$user \
      bash -c '$steps'"
  }
else
  echo "fresh clone: $clone, user $(id -un), CHROMIUM=$tmp/no-browser"
  run() {
    "${clean[@]}" HOME="$HOME" USER="$(id -un)" CHROMIUM="$tmp/no-browser" \
      PLAYWRIGHT_BROWSERS_PATH="$tmp/none" bash -c "$steps"
  }
fi
rc=0
run 2>&1 | tee "$log" || rc=$?
test "$rc" = 0 || { echo "fresh clone: the run failed (exit $rc)"; exit 1; }
for what in "Re-DocRED" "the MiniLM encoder" "a Chromium" "the paper's text"; do
  n="$(grep -c "^skipped: $what" "$log" || true)"
  test "$n" = 1 || { echo "fresh clone: $n 'skipped: $what' lines, expected 1"; exit 1; }
done
n="$(grep -c '^skipped: ' "$log" || true)"
test "$n" = 4 || { echo "fresh clone: $n 'skipped:' lines, expected 4"; exit 1; }
echo "fresh clone: passed, one skip line for each of the 4 missing resources"
