#!/usr/bin/env bash
# Fails when `buf generate` would change the committed generated code.
set -euo pipefail
cd "$(dirname "$0")/../.."
npx buf generate
if ! git diff --quiet -- proto/src/gen || [ -n "$(git status --porcelain -- proto/src/gen)" ]; then
  echo "generated code in proto/src/gen is out of date: run 'npx buf generate' and commit the result"
  git status --porcelain -- proto/src/gen
  exit 1
fi
