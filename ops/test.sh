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
rm -f "$report"
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
vitest_status=$?

if [ -f "$report" ]; then
  read -r passed failed < <(node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    // A suite that fails to load counts as a failure even though it ran no test.
    const broken = r.testResults.filter((s) => s.status === "failed" && s.assertionResults.every((a) => a.status !== "failed")).length;
    console.log(r.numPassedTests, r.numFailedTests + broken);
  ' "$report")
else
  passed=0; failed=1
fi
failed=$((failed + failed_checks))
if [ "$vitest_status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
