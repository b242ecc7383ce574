#!/usr/bin/env bash
# Brings the whole local platform up in the foreground (installing what it needs first):
# 2 MariaDB servers holding 4 metadata shards, Redis, 6 MinIO nodes, and the metaserver,
# blockserver and notifyserver. Ctrl-C stops it; `bash ops/up.sh stop` stops it from elsewhere.
#   bash ops/up.sh [up|stop|status]
set -euo pipefail
cd "$(dirname "$0")/.."
command="${1:-up}"
if [ "$command" = "up" ]; then bash ops/install.sh; fi
export PATH="$PATH:/usr/sbin"
exec node ops/dist/bin.js "$command"
