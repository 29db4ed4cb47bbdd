#!/usr/bin/env bash
# Stops the demo 1ldd (SIGTERM: it lets running operations reach a safe point).
set -euo pipefail
PIDFILE="$(cd "$(dirname "$0")/.." && pwd)/target/demo/1ldd.pid"
[ -f "$PIDFILE" ] || exit 0
pid=$(cat "$PIDFILE")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  echo "==> 1ldd stopped"
fi
rm -f "$PIDFILE"
