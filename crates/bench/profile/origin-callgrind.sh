#!/usr/bin/env bash
# Counts the origin's instructions per score-add with callgrind: a dev server
# and the origin alone (no Pushpin, no worker), N score-adds over one
# keep-alive connection, then the profile's totals and top functions.
#
#   crates/bench/profile/origin-callgrind.sh [N]        (default 4000)
#
# BIN (default target-bench/release) holds reql-dev-server and
# leaderboard-web; WEB overrides the origin binary (to compare two builds).
# Needs valgrind (apt-get install valgrind) and python3.
set -euo pipefail
cd "$(dirname "$0")/../../.."
N=${1:-4000}
BIN=${BIN:-target-bench/release}
WEB=${WEB:-$BIN/leaderboard-web}
OUT=$(mktemp -d /tmp/lb-callgrind.XXXX)
WEBPORT=${WEBPORT:-25999}

"$BIN/reql-dev-server" --bind 127.0.0.1 --driver-port 0 > "$OUT/db.log" 2>&1 &
DBPID=$!
trap 'kill $DBPID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "Listening for client driver" "$OUT/db.log" && break; sleep 0.1; done
DBPORT=$(grep -o "connections on port [0-9]*" "$OUT/db.log" | grep -o "[0-9]*$")

DATABASE_URL="rethinkdb://admin@127.0.0.1:$DBPORT/prof" HOST=127.0.0.1 PORT=$WEBPORT RUST_LOG=info \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$WEB" > "$OUT/web.log" 2>&1 &
WPID=$!
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WEBPORT/readyz")" = 200 ] && break
  sleep 0.2
done
curl -s -X POST "http://127.0.0.1:$WEBPORT/boards/" -H 'Content-Type: application/json' \
  -d '{"id":"prof","name":"prof"}' > /dev/null
for p in $(seq 0 9); do
  curl -s -X POST "http://127.0.0.1:$WEBPORT/boards/prof/players/" -H 'Content-Type: application/json' \
    -d "{\"id\":\"p$p\",\"name\":\"p$p\"}" > /dev/null
done
python3 - "$WEBPORT" "$N" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    conn.request("POST", "/boards/prof/players/p%d/score-add/" % (i % 10),
                 body='{"value":1}', headers={"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
PY
kill -TERM $WPID; wait $WPID || true
TOTAL=$(grep "^totals:" "$OUT/callgrind.out" | awk '{print $2}')
echo "$N score-adds: $TOTAL instructions in all, $((TOTAL / N)) per score-add (start-up and set-up included: use N in the thousands)"
callgrind_annotate --inclusive=yes "$OUT/callgrind.out" 2>/dev/null | sed -n '20,80p' | cut -c1-180
echo "profile: $OUT/callgrind.out"
