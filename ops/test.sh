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
report=.satchel/vitest-report.json
nemesis_report=.satchel/vitest-nemesis-report.json
nemesis_log=.satchel/vitest-nemesis.log
rm -f "$report" "$nemesis_report" "$nemesis_log"
nemesis_status=0
if [ "$#" -eq 0 ]; then
  # The nemesis runs on a cluster of its own beside the unit and integration projects (their
  # clusters share nothing but the machine); its output follows theirs.
  npx vitest run --project nemesis --reporter=default --reporter=json --outputFile.json="$nemesis_report" >"$nemesis_log" 2>&1 &
  nemesis_pid=$!
  npx vitest run --project unit --project integration --reporter=default --reporter=json --outputFile.json="$report"
  vitest_status=$?
  wait "$nemesis_pid"
  nemesis_status=$?
  echo "[test] nemesis (ran beside the suite above)"
  cat "$nemesis_log"
else
  npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
  vitest_status=$?
fi

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
read -r passed failed < <(count "$report")
if [ "$#" -eq 0 ]; then
  read -r nemesis_passed nemesis_failed < <(count "$nemesis_report")
  passed=$((passed + nemesis_passed))
  failed=$((failed + nemesis_failed))
  if [ "$nemesis_status" -ne 0 ] && [ "$nemesis_failed" -eq 0 ]; then failed=$((failed + 1)); fi
fi
failed=$((failed + failed_checks))
if [ "$vitest_status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
