#!/usr/bin/env bash
# Success-path instructions per request, counted by callgrind (repeatable, whatever the load).
#
# Runs the harness's `--profile KIND N` for each client twice (N1 and N2 sequential loopback
# requests, each answered with OpenAI's `x-ratelimit-*` headers) and prints, per client, the
# instructions one more request costs: (I(N2) - I(N1)) / (N2 - N1). Start-up and warm-up cancel
# out. Printed: the empty reqwest-middleware stack, then reqwest-retry and this crate as
# instructions above the empty stack; the same for calls to malloc (the client's and the mock
# server's: the server's cancel out).
#
# Usage: bash benches/callgrind.sh [N1 N2]   (default 1000 3000; about 2 minutes after the build)
# Extra cargo flags (e.g. features) go in CARGO_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${1:-1000}
n2=${2:-3000}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
# shellcheck disable=SC2086
bin=$(cargo bench --bench harness --no-run --message-format=json ${CARGO_FLAGS:-} 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "harness" and m.get("executable"):
        print(m["executable"])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # KIND N -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" "$bin" --profile "$1" "$2" >/dev/null 2>&1
  callgrind_annotate "$out/$1.$2" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
}
mallocs() { # KIND N -> calls to malloc in the whole run (client and server)
  python3 - "$out/$1.$2" <<'PY'
import re, sys
names, callee, total = {}, None, 0
for line in open(sys.argv[1]):
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        names[m.group(2)] = m.group(3) or names.get(m.group(2))
        if m.group(1):
            callee = names[m.group(2)]
    elif line.startswith("calls=") and callee == "malloc":
        total += int(line[6:].split()[0])
print(total)
PY
}
per_request() { # KIND -> marginal instructions and allocations per request
  local a b
  a=$(count "$1" "$n1")
  b=$(count "$1" "$n2")
  echo $(((b - a) / (n2 - n1))) $((($(mallocs "$1" "$n2") - $(mallocs "$1" "$n1")) / (n2 - n1)))
}
read -r empty empty_allocs <<<"$(per_request empty)"
read -r retry retry_allocs <<<"$(per_request retry)"
read -r ours ours_allocs <<<"$(per_request ours)"
printf '%-32s %9s %12s\n' '' 'instructions a request' 'allocations'
printf '%-32s %9d %12d\n' 'empty reqwest-middleware stack' "$empty" "$empty_allocs"
printf '%-32s %+9d %+12d\n' 'reqwest-retry 0.9' "$((retry - empty))" "$((retry_allocs - empty_allocs))"
printf '%-32s %+9d %+12d\n' 'LlmRetryMiddleware' "$((ours - empty))" "$((ours_allocs - empty_allocs))"
printf '(per-function counts: callgrind_annotate on %s/ours.%s, kept with KEEP=1)\n' "$out" "$n2"
if [ "${KEEP:-0}" = 1 ]; then trap - EXIT; fi
