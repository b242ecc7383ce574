#!/usr/bin/env bash
# Runs the whole test suite: contract checks (buf lint, generated code up to date), the build,
# unit tests, and integration tests against a real local cluster that the suite starts and stops.
# Ends with one line "N passed, N failed" and exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

bash ops/install.sh || { echo "0 passed, 1 failed"; exit 1; }

failed_checks=0
echo "[test] buf lint"
npx buf lint || failed_checks=$((failed_checks + 1))
echo "[test] generated code is up to date"
bash ops/scripts/check-generated.sh || failed_checks=$((failed_checks + 1))

mkdir -p .satchel
rm -f .satchel/vitest-*.json .satchel/vitest-*.log
reports=()
besides=()
# A project run beside the main one, on a cluster of its own (NAME, then environment settings).
beside() {
  local name=$1; shift
  env "$@" npx vitest run --project "$name" --reporter=default --reporter=json --outputFile.json=".satchel/vitest-$name.json" \
    >".satchel/vitest-$name.log" 2>&1 &
  besides+=("$name:$!")
  reports+=(".satchel/vitest-$name.json")
}
beside_failed=0
if [ "$#" -eq 0 ]; then
  # The long seeded suites run beside the unit and integration projects (their clusters share
  # nothing but the machine); their output follows.
  beside nemesis
  beside syncsim SATCHEL_TEST_STATE_DIR="$PWD/.satchel/test-sim" SATCHEL_TEST_PORT_BASE=19300
  npx vitest run --project unit --project integration --reporter=default --reporter=json --outputFile.json=.satchel/vitest-main.json
  vitest_status=$?
  for b in "${besides[@]}"; do
    wait "${b#*:}" || beside_failed=$((beside_failed + 1))
    echo "[test] ${b%%:*} (ran beside the suites above)"
    cat ".satchel/vitest-${b%%:*}.log"
  done
else
  npx vitest run --reporter=default --reporter=json --outputFile.json=.satchel/vitest-main.json "$@"
  vitest_status=$?
fi
reports=(.satchel/vitest-main.json "${reports[@]}")

# passed and failed of one JSON report; a missing report is one failure.
count() {
  if [ -f "$1" ]; then
    node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      // A suite that fails to load counts as a failure even though it ran no test.
      const broken = r.testResults.filter((s) => s.status === "failed" && s.assertionResults.every((a) => a.status !== "failed")).length;
      console.log(r.numPassedTests, r.numFailedTests + broken);
    ' "$1"
  else
    echo 0 1
  fi
}
# Every failed test once more, in a few lines each, just above the last line: a long log's tail
# then names them all (a failing simulation seed prints a hundred lines of steps).
failures() {
  [ -f "$1" ] && node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const root = process.cwd() + "/";
    for (const s of r.testResults) {
      for (const a of s.assertionResults.filter((x) => x.status === "failed")) {
        // The first line, and the received side of a diff when there is one (the violations of a seed).
        const lines = (a.failureMessages[0] ?? "").replace(/\x1b\[[0-9;]*m/g, "").split("\n").filter((l) => /\S/.test(l) && !/^\s*at /.test(l));
        const received = lines.filter((l) => /^\s*\+\s+\S/.test(l) && !/^\s*\+\s+(Received|[\[\]])\s*$/.test(l));
        const why = [lines[0]?.slice(0, 120), ...(received.length > 0 ? received : lines.slice(1, 3))].filter(Boolean).map((l) => l.trim()).join(" | ");
        console.log(`[failed] ${s.name.replace(root, "")} > ${a.fullName}: ${why.slice(0, 600)}`);
      }
      if (s.status === "failed" && s.assertionResults.every((a) => a.status !== "failed")) console.log(`[failed] ${s.name.replace(root, "")}: ${(s.message ?? "").slice(0, 600)}`);
    }
  ' "$1"
}
for r in "${reports[@]}"; do failures "$r"; done
passed=0; failed=0
for r in "${reports[@]}"; do
  read -r p f < <(count "$r")
  passed=$((passed + p)); failed=$((failed + f))
done
# A project that exited non-zero with no failed test (a crash, a failed setup) is one failure.
if [ "$beside_failed" -gt 0 ] && [ "$failed" -eq 0 ]; then failed=$beside_failed; fi
failed=$((failed + failed_checks))
if [ "$vitest_status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
