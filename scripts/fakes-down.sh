#!/usr/bin/env bash
# Stops the fake upstreams started by scripts/fakes-up.sh (SIGTERM; the pid
# file is target/demo/fakes.pid). The token/key files are kept for the next run.
set -euo pipefail
DEMO="$(cd "$(dirname "$0")/.." && pwd)/target/demo"
PIDFILE="$DEMO/fakes.pid"
[ -f "$PIDFILE" ] || exit 0
pid=$(cat "$PIDFILE")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if grep -q "UNRECORDED" "$DEMO/fakes.log" 2>/dev/null; then
    echo "==> fake upstreams stopped; some requests were not recorded (599), see $DEMO/fakes.log" >&2
  else
    echo "==> fake upstreams stopped"
  fi
fi
rm -f "$PIDFILE" "$DEMO/fakes.out"
