#!/usr/bin/env bash
# How long a newcomer waits: `make install`, `make demo` and `make test` timed in a fresh
# clone of HEAD with nothing beside it (no ../shared), by a user who is not root (as root:
# hingeabl-ci, created when missing), with an empty pip cache; the times, the machine and
# its load before and after go to bench/fresh-times.json, which the README's times quote
# (tests/test_contributing.py keeps them within 20% of it).
#   bash dev/time_fresh.sh [RECORD]     (default bench/fresh-times.json)
# A fresh `make demo` is install + demo; a fresh `make test` is install + test (the two
# install the same thing). PyTorch comes from wherever pip finds it on this machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
record="${1:-$root/bench/fresh-times.json}"
tmp="$(mktemp -d /tmp/hingeabl-time.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
clone="$tmp/hingeabl-nb"
git -C "$root" diff --quiet HEAD -- || echo "time_fresh: uncommitted changes are NOT timed (HEAD is)"
git clone -q --no-checkout "$root" "$clone"
git -C "$clone" checkout -q "$(git -C "$root" rev-parse HEAD)"
steps='cd "$CLONE" && for t in install demo test; do s=$SECONDS; make $t 2>&1 || exit 1; echo "time_fresh: make $t $((SECONDS - s)) s"; done'
# this machine's pip settings (PIP_* variables: an index, a local wheel folder) carry over
mapfile -t pip_env < <(env | grep '^PIP_' || true)
clean=(env -i LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin CLONE="$clone" "${pip_env[@]}"
  PIP_CACHE_DIR="$tmp/pip-cache" PIP_PROGRESS_BAR=off)
load0="$(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$(id -u)" = 0 ]; then
  user=hingeabl-ci
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  chown -R "$user:" "$tmp"
  setpriv --reuid="$user" --regid="$user" --init-groups "${clean[@]}" \
    HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" bash -o pipefail -c "$steps" |
    tee "$tmp/log"
else
  "${clean[@]}" HOME="$HOME" USER="$(id -un)" bash -o pipefail -c "$steps" | tee "$tmp/log"
fi
load1="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$tmp/log" "$record" "$load0" "$load1" "$(git -C "$root" rev-parse --short HEAD)" <<'PY'
import datetime, json, os, platform, re, sys

log, record, load0, load1, commit = sys.argv[1:]
secs = dict(re.findall(r"^time_fresh: make (\w+) ([\d.]+) s$", open(log).read(), re.M))
if set(secs) != {"install", "demo", "test"}:
    sys.exit(f"time_fresh: a step did not finish: {secs}")
s = {k: round(float(v)) for k, v in secs.items()}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rec = {
    "command": "bash dev/time_fresh.sh",
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "commit": commit,
    "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}",
    "load_average_before": load0,
    "load_average_after": load1,
    "how": "fresh clone of HEAD, nothing beside it, new .venv, empty pip cache, "
    "a user who is not root",
    "seconds": {"make install": s["install"], "make demo": s["demo"], "make test": s["test"]},
    "fresh": {"make demo": s["install"] + s["demo"], "make test": s["install"] + s["test"]},
}
with open(record, "w") as f:
    json.dump(rec, f, indent=1)
    f.write("\n")
print(json.dumps(rec, indent=1))
PY
