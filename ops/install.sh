#!/usr/bin/env bash
# Installs everything the local platform needs, idempotently, on a machine that has Node 20, Go
# and apt: MariaDB, Redis and Prometheus from Debian packages, the pinned MinIO server built from source with
# `go install` (cached under the user's cache directory), the npm workspaces, and the build.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[install] %s\n' "$*"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Prometheus and promtool: the alert rules' unit tests and the monitoring tests run them.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Chromium: the console test renders Prometheus's console templates headless (playwright-core).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Syncthing and restic: the peers `npm run bench` measures Satchel against (and its CI smoke runs).
command -v syncthing >/dev/null 2>&1 || missing+=(syncthing)
command -v restic >/dev/null 2>&1 || missing+=(restic)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/usr/local/go/bin"

MINIO_VERSION=$(sed -n 's/^export const MINIO_VERSION = "\(.*\)";$/\1/p' ops/src/config.ts)
MINIO_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/satchel/minio/$MINIO_VERSION"
if [ ! -x "$MINIO_DIR/minio" ]; then
  command -v go >/dev/null 2>&1 || { echo "Go is required to build MinIO (go install)"; exit 1; }
  say "building MinIO $MINIO_VERSION with go install (a few minutes, once)"
  mkdir -p "$MINIO_DIR"
  GOBIN="$MINIO_DIR" GOFLAGS=-trimpath go install "github.com/minio/minio@$MINIO_VERSION"
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm workspaces"
  npm ci --no-audit --no-fund --loglevel=error
fi

say "building"
npx tsc -b
