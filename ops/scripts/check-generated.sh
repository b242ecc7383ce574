#!/usr/bin/env bash
# Fails when `buf generate` would change the generated code in git (committed or staged).
set -euo pipefail
cd "$(dirname "$0")/../.."
npx buf generate
untracked=$(git ls-files --others --exclude-standard -- proto/src/gen)
if ! git diff --quiet -- proto/src/gen || [ -n "$untracked" ]; then
  echo "generated code in proto/src/gen is out of date: run 'npx buf generate' and commit the result"
  git diff --stat -- proto/src/gen
  [ -n "$untracked" ] && echo "untracked: $untracked"
  exit 1
fi
