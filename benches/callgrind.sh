#!/usr/bin/env bash
# Success-path instructions per request, counted by callgrind (repeatable, whatever the load).
#
# Runs the harness's `--profile KIND N` for each client twice (N1 and N2 sequential loopback
# requests, each answered with OpenAI's `x-ratelimit-*` headers) and prints, per client, the
# instructions one more request costs: (I(N2) - I(N1)) / (N2 - N1). Start-up and warm-up cancel
# out. Printed: the empty reqwest-middleware stack, then reqwest-retry and this crate as
# instructions above the empty stack.
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
per_request() { # KIND -> marginal instructions per request
  local a b
  a=$(count "$1" "$n1")
  b=$(count "$1" "$n2")
  echo $(((b - a) / (n2 - n1)))
}
empty=$(per_request empty)
retry=$(per_request retry)
ours=$(per_request ours)
printf 'empty reqwest-middleware stack   %7d instructions a request\n' "$empty"
printf 'reqwest-retry 0.9                %+7d\n' "$((retry - empty))"
printf 'LlmRetryMiddleware               %+7d\n' "$((ours - empty))"
printf '(per-function counts: callgrind_annotate on %s/ours.%s, kept with KEEP=1)\n' "$out" "$n2"
if [ "${KEEP:-0}" = 1 ]; then trap - EXIT; fi
