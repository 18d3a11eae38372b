#!/bin/bash
# The 50,000-connection measurement of docs/scaling.md: three nodes on the local
# PostgreSQL and Redis (a schema and key prefix of its own, removed at the end), one
# idle worker per node holding PER (default 17,000) customer connections.
# Build first: cargo build --release --features postgres,redis --workspace
# (PROFILE=debug uses the test builds). Loopback only.
set -u
T=${CARGO_TARGET_DIR:-$HOME/.cache/warmline-target}/${PROFILE:-release}
BIN=${BIN:-$T/warmline}; LT=${LT:-$T/warmline-loadtest}
W=$(mktemp -d)
PER=${PER:-17000}
SCHEMA=wl_scale_$$
psql -q -h 127.0.0.1 -U postgres test -c "CREATE SCHEMA $SCHEMA"
URL="postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D$SCHEMA"
cat > $W/wl.toml <<T
[server]
shutdown_grace_ms = 3000
[customer]
allow_missing_origin = true
allowed_origins = ["*"]
[store]
url = "$URL"
[cluster]
redis_url = "redis://127.0.0.1:6379"
prefix = "$SCHEMA"
heartbeat_ms = 1000
expiry_ms = 5000
[log]
level = "warn"
T
for i in 0 1 2; do
  ( ulimit -n 20000; exec $BIN serve --config $W/wl.toml --listen 127.0.0.1:0 --data-dir $W/d$i > $W/n$i.out 2> $W/n$i.log ) &
  echo $! > $W/n$i.pid
done
sleep 3
ADDRS=()
for i in 0 1 2; do
  a=$(grep -o "listening on http://[0-9.:]*" $W/n$i.out | sed 's#.*http://##'); ADDRS+=($a)
  for t in $(seq 1 60); do c=$(curl -s -o /dev/null -w '%{http_code}' http://$a/readyz); [ "$c" = 200 ] && break; sleep 0.5; done
  echo "node $i $a readyz $c"
done
start=$(date +%s.%N)
for i in 0 1 2; do
  ( ulimit -n 20000; (echo "open $PER"; sleep 600) | $LT idle-worker --addr ${ADDRS[$i]} --warmline --offset $((i*PER)) > $W/w$i.out 2>&1 ) > /dev/null 2>&1 &
done
for t in $(seq 1 400); do
  n=$(cat $W/w*.out 2>/dev/null | grep -c "^ok")
  [ "$n" = 3 ] && break; sleep 1
done
end=$(date +%s.%N)
cat $W/w*.out
echo "opened in $(echo "$end - $start" | bc) s"
for i in 0 1 2; do
  pid=$(cat $W/n$i.pid)
  echo "node $i role $(curl -s http://${ADDRS[$i]}/readyz) rss_kb $(grep VmRSS /proc/$pid/status | awk '{print $2}') fds $(ls /proc/$pid/fd | wc -l)"
done
echo "established sockets to nodes:"; for a in "${ADDRS[@]}"; do p=${a##*:}; echo "$a $(ss -Htn state established "( sport = :$p )" | wc -l)"; done
echo "customers in store: $(psql -tA -h 127.0.0.1 -U postgres test -c "SELECT count(*) FROM $SCHEMA.customers")"
pkill -f "idle-worker" ; for i in 0 1 2; do kill $(cat $W/n$i.pid); done; sleep 4
psql -q -h 127.0.0.1 -U postgres test -c "DROP SCHEMA $SCHEMA CASCADE"
redis-cli --scan --pattern "$SCHEMA:*" | xargs -r redis-cli del > /dev/null
