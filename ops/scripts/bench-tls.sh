#!/usr/bin/env bash
# The cost of TLS, measured in one run: a cluster with TLS on every hop (port base 7300) and one in
# plaintext (SATCHEL_PLAINTEXT=on, port base 7400) are up at once, and the transfer and commit
# benchmarks alternate between them (ABBA), so that the machine's noise falls on both alike.
# Per-user rate limits are raised: this measures capacity, not the limits. Run after "npx tsc -b";
# it stops both clusters at the end. ~12 minutes on 2 cores.
#   bash ops/scripts/bench-tls.sh [transfer MiB, default 100] [commit seconds per level, default 5]
set -u
cd "$(dirname "$0")/../.."
mib="${1:-100}"; seconds="${2:-5}"
export SATCHEL_RATE_LIMITS='{"metadata":{"perSecond":1000000,"burst":1000000},"commits":{"perSecond":1000000,"burst":1000000},"blocks":{"perSecond":100000000000,"burst":100000000000}}'
tls() { SATCHEL_STATE_DIR=.satchel/bench-tls SATCHEL_PORT_BASE=7300 "$@"; }
plain() { SATCHEL_PLAINTEXT=on SATCHEL_STATE_DIR=.satchel/bench-plain SATCHEL_PORT_BASE=7400 "$@"; }
mkdir -p .satchel
(tls node ops/dist/bin.js up > .satchel/bench-tls.log 2>&1 &)
(plain node ops/dist/bin.js up > .satchel/bench-plain.log 2>&1 &)
trap 'tls node ops/dist/bin.js stop; plain node ops/dist/bin.js stop' EXIT
for f in .satchel/bench-tls.log .satchel/bench-plain.log; do
  for _ in $(seq 1 120); do grep -q "Try:" "$f" && break; sleep 2; done
  grep -q "Try:" "$f" || { echo "a cluster did not come up: see $f"; exit 1; }
done
for bench in "transfer.js $mib 3" "commits.js $seconds 1,8,64"; do
  for mode in tls plain plain tls; do
    echo "=== $mode: $bench"
    # shellcheck disable=SC2086
    $mode node ops/dist/bench/$bench
  done
done
