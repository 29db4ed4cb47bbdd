#!/usr/bin/env bash
# Starts fake-upstreams in the background for the demo: a fake NetBox and a
# fake Wiki.js (optionally Home Assistant) that replay real recorded
# transcripts, listening on the default sandbox bridge's host address (the
# `subnet:` of $PVE_SANDBOX_ROOT/etc/sandbox.conf, .1; default 10.213.7.1),
# so agents in sandbox containers can reach them. Nothing else is contacted.
#
# Credentials are files under target/demo (mode 0600, created once, random):
#   netbox-token  a v2 token (nbt_<key>.<secret>; the agent sends it as Bearer)
#   wikijs-key    a Wiki.js API key (accepted as the full-access admin key)
#   ha-token      with FAKES_HA=1
# pid and log: target/demo/fakes.pid, target/demo/fakes.log (this run only; URLs in fakes.out).
# Idempotent: a running instance is left alone. Stop with scripts/fakes-down.sh.
#
# Environment: FAKES_BIN (default target/release/fake-upstreams, `make
# fakes-bin`), FAKES_HOST (default the bridge address; 127.0.0.1 works without
# a sandbox), NETBOX_PORT (8000), WIKIJS_PORT (3000), FAKES_HA=1 and HA_PORT (8123).
set -euo pipefail
TOP="$(cd "$(dirname "$0")/.." && pwd)"
DEMO="$TOP/target/demo"
BIN="${FAKES_BIN:-$TOP/target/release/fake-upstreams}"
ROOT="${PVE_SANDBOX_ROOT:-/var/lib/pve-sandbox}"
PIDFILE="$DEMO/fakes.pid"
mkdir -p "$DEMO"

subnet=""
if [ -r "$ROOT/etc/sandbox.conf" ]; then
  subnet=$(sed -n 's/^subnet:[[:space:]]*//p' "$ROOT/etc/sandbox.conf" | tail -n1 | tr -d '[:space:]')
fi
subnet="${subnet:-10.213.7.0/24}"
HOST="${FAKES_HOST:-${subnet%.*}.1}"
NETBOX="$HOST:${NETBOX_PORT:-8000}"
WIKIJS="$HOST:${WIKIJS_PORT:-3000}"
HA="$HOST:${HA_PORT:-8123}"

show() {
  echo "    NetBox   http://$NETBOX   token:   $DEMO/netbox-token"
  echo "    Wiki.js  http://$WIKIJS   API key: $DEMO/wikijs-key"
  if [ "${FAKES_HA:-0}" = 1 ]; then
    echo "    Home Assistant  http://$HA   token: $DEMO/ha-token"
  fi
  echo "    log: $DEMO/fakes.log (every unrecorded request is an ERROR line and a 599)"
}

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "==> fake upstreams already running (pid $(cat "$PIDFILE")):"
  sed 's/^/    /' "$DEMO/fakes.out" 2>/dev/null || true
  exit 0
fi
[ -x "$BIN" ] || { echo "fakes-up: $BIN is not built; run \`make fakes-bin\`" >&2; exit 1; }
if [ "$HOST" != 127.0.0.1 ] && command -v ip >/dev/null \
   && ! ip -4 -o addr show 2>/dev/null | grep -q "inet $HOST/"; then
  echo "fakes-up: no interface has $HOST (the sandbox bridge's host address); run \`make sandbox\` first" >&2
  exit 1
fi

# Random credentials, written once with mode 0600 (never on a command line).
rand() { local s; s=$(head -c 256 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9'); printf '%s' "${s:0:$1}"; }
secret() { # file value
  [ -s "$1" ] && return 0
  ( umask 077; printf '%s\n' "$2" > "$1" )
}
secret "$DEMO/netbox-token" "nbt_$(rand 12).$(rand 40)"
secret "$DEMO/wikijs-key" "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.$(rand 64).$(rand 86)"
chmod 0600 "$DEMO/netbox-token" "$DEMO/wikijs-key"
args=(--netbox "$NETBOX" --netbox-token-file "$DEMO/netbox-token"
      --wikijs "$WIKIJS" --wikijs-key-file "$DEMO/wikijs-key" --wikijs-stateful)
want=2
if [ "${FAKES_HA:-0}" = 1 ]; then
  secret "$DEMO/ha-token" "$(rand 64)"
  chmod 0600 "$DEMO/ha-token"
  args+=(--ha "$HA" --ha-token-file "$DEMO/ha-token")
  want=3
fi

echo "==> starting fake upstreams (log: $DEMO/fakes.log)"
: > "$DEMO/fakes.out"
setsid "$BIN" "${args[@]}" </dev/null >"$DEMO/fakes.out" 2>"$DEMO/fakes.log" &
echo $! > "$PIDFILE"
for _ in $(seq 1 100); do
  if [ "$(wc -l < "$DEMO/fakes.out")" -ge "$want" ]; then
    echo "==> fake upstreams running (pid $(cat "$PIDFILE")):"
    show
    exit 0
  fi
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
  sleep 0.1
done
echo "fakes-up: fake-upstreams did not start; see $DEMO/fakes.log" >&2
tail -5 "$DEMO/fakes.log" >&2 || true
kill "$(cat "$PIDFILE")" 2>/dev/null || true
rm -f "$PIDFILE"
exit 1
