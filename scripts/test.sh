#!/usr/bin/env bash
# Flowline's whole test suite: starts a throw-away PostgreSQL (installing it from Debian's packages if
# missing), builds the package, runs the Swift Testing suites against SQLite and PostgreSQL, then drives the
# `flowline` CLI over the example flows and the broken-flow corpus, and the Studio in headless Chromium. Ends with one line "N passed, N failed, N skipped" (under the script a missing peer fails; nothing skips unless disabled).
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }

echo "== PostgreSQL for the store tests"
if ! pg_env=$(bash scripts/postgres.sh); then
  echo "could not start PostgreSQL"
  echo "0 passed, 1 failed"
  exit 1
fi
eval "$pg_env"
trap 'bash scripts/postgres.sh stop "$FLOWLINE_PG_DIR"' EXIT
echo "PostgreSQL at $FLOWLINE_TEST_POSTGRES_URL"

echo "== protocol peers on loopback (localstripe, aiosmtpd, fakellm) in .build-venv"
if ! peers_env=$(bash scripts/peers.sh); then
  echo "could not start the protocol peers"
  echo "0 passed, 1 failed"
  exit 1
fi
eval "$peers_env"
export FLOWLINE_REQUIRE_PEERS=1
trap 'bash scripts/peers.sh stop "$FLOWLINE_PEERS_DIR"; bash scripts/postgres.sh stop "$FLOWLINE_PG_DIR"' EXIT

echo "== build"
if ! swift build --build-tests; then
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== swift test"
log=$(mktemp)
swift test --skip-build 2>&1 | tee "$log" | grep -E '^(✘|✔ Suite|✔ Test run with|✘ Test run with)' || true
total=$(grep -oE 'Test run with [0-9]+ tests?' "$log" | grep -oE '[0-9]+' | tail -1)
bad=$(grep -cE '^✘ Test .* (failed|recorded)' "$log" || true)
skipped=0
if [ -z "$total" ]; then
  fail "swift test did not report a test run"
else
  bad_tests=$(grep -E '^✘ Test .* failed after' "$log" | grep -vc '^✘ Test run with' || true)
  # A test whose peer is missing is cancelled (`Peer`), one that is disabled is skipped: neither is a pass.
  skipped=$(grep -cE '^➜ Test .* (skipped|was cancelled)' "$log" || true)
  grep -E '^➜ Test .* (skipped|was cancelled)' "$log" || true
  passed=$((passed + total - bad_tests - skipped))
  failed=$((failed + bad_tests))
  [ "$bad" -gt 0 ] && echo "swift test: $bad_tests failing test(s)"
fi
rm -f "$log"

flowline=.build/debug/flowline
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; bash scripts/peers.sh stop "$FLOWLINE_PEERS_DIR"; bash scripts/postgres.sh stop "$FLOWLINE_PG_DIR"' EXIT

echo "== pywa checks the same WhatsApp fixtures and signatures as WhatsAppWebhookTests (an independent parser)"
if .build-venv/bin/python scripts/pywa_check.py; then pass; else fail "pywa disagrees with Fixtures/whatsapp/expected.json"; fi

echo "== flowline check flows/"
if $flowline check flows/ 2>"$tmp/check.err"; then pass; else fail "flowline check flows/"; cat "$tmp/check.err"; fi
if $flowline check --json flows/ >"$tmp/check.json" && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d == [], d' "$tmp/check.json"; then
  pass
else
  fail "flowline check --json flows/ should print []"
fi

echo "== broken flows exit 1 exactly when they have errors"
for f in Tests/FlowCompilerTests/Fixtures/broken/*.yaml Tests/FlowCompilerTests/Fixtures/broken/*.json; do
  expected="${f%.*}.expected"
  want=0
  grep -q ': error: ' "$expected" && want=1
  $flowline check "$f" 2>/dev/null
  got=$?
  if [ "$got" = "$want" ]; then pass; else fail "check $f exited $got, want $want"; fi
done
f=Tests/FlowCompilerTests/Fixtures/broken/several-mistakes.yaml
if $flowline check --json "$f" >"$tmp/several.json"; then fail "--json must still exit 1 on errors"; fi
n=$(grep -c ': error: ' "${f%.*}.expected")
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); e=[x for x in d if x["severity"]=="error"]; assert len(e)==int(sys.argv[2]), len(e); assert all({"file","line","column","code","message","block"} <= x.keys() for x in d)' "$tmp/several.json" "$n"; then
  pass
else
  fail "check --json should list $n errors with file, line, column, code, message and block"
fi

echo "== every example chats to its end from its script"
for flow in flows/*.yaml flows/*.json; do
  case "$flow" in *.mock.yaml|*.mock.json) continue ;; esac
  base="${flow%.*}"
  name=$(basename "$base")
  mock=()
  [ -f "$base.mock.yaml" ] && mock=(--mock "$base.mock.yaml")
  if ! [ -f "$base.chat" ]; then fail "$flow has no chat script"; continue; fi
  if $flowline chat "$flow" "${mock[@]}" <"$base.chat" >"$tmp/$name.out" 2>"$tmp/$name.err" \
     && [ "$(tail -1 "$tmp/$name.out")" = "end: the flow finished" ] \
     && diff -u "Tests/FlowCompilerTests/Fixtures/transcripts/$name.txt" "$tmp/$name.out"; then
    pass
  else
    fail "chat $flow"
    cat "$tmp/$name.err"
  fi
done

echo "== chat stops cleanly at end of input"
out=$(printf 'Carla\n' | $flowline chat flows/lead-qualification.yaml)
if [ "$(printf '%s\n' "$out" | tail -1)" = "waiting: input" ]; then pass; else fail "chat should end with 'waiting: input'"; fi

echo "== compile and disassemble"
for flow in flows/clinic-booking.yaml flows/welcome-menu.json; do
  name=$(basename "${flow%.*}")
  if $flowline compile "$flow" -o "$tmp/$name.flowbc" >/dev/null \
     && $flowline disasm "$tmp/$name.flowbc" >"$tmp/$name.bc.txt" \
     && $flowline disasm "$flow" >"$tmp/$name.src.txt" \
     && diff -q "$tmp/$name.bc.txt" "$tmp/$name.src.txt" >/dev/null \
     && diff -q "$tmp/$name.src.txt" "Tests/FlowCompilerTests/Fixtures/disasm/$name.txt" >/dev/null; then
    pass
  else
    fail "compile/disasm $flow"
  fi
done
head -c 40 "$tmp/clinic-booking.flowbc" >"$tmp/truncated.flowbc"
if $flowline disasm "$tmp/truncated.flowbc" >/dev/null 2>"$tmp/trunc.err"; then
  fail "disasm of truncated bytecode must fail"
elif grep -q corrupt_encoding "$tmp/trunc.err"; then pass; else fail "truncated bytecode error should say corrupt_encoding"; fi

echo "== engine from the CLI: publish, send, work on SQLite"
db="sqlite:$tmp/e2e.db"
if $flowline publish --database "$db" flows/welcome-menu.json >/dev/null \
   && $flowline send --database "$db" --contact 551 --id w1 "Hi" >/dev/null \
   && $flowline work --database "$db" --channel-file "$tmp/sent.jsonl" --until-idle \
   && [ "$($flowline send --database "$db" --contact 551 --id w1 "Hi")" = "duplicate message id: ignored" ] \
   && $flowline send --database "$db" --contact 551 --id w2 "Português" >/dev/null \
   && $flowline send --database "$db" --contact 551 --id w3 "2" >/dev/null \
   && $flowline work --database "$db" --channel-file "$tmp/sent.jsonl" --until-idle \
   && python3 - "$tmp/sent.jsonl" <<'PY'
import json, sys
texts = [json.loads(l)["text"] for l in open(sys.argv[1])]
assert texts == ["Welcome! Bem-vindo! Choose your language / Escolha o idioma:", "Como posso ajudar?",
                 "One moment, please. / Um momento, por favor."], texts
PY
then
  if $flowline conversations --database "$db" --status handoff | grep -q welcome-menu; then pass; else fail "conversation should be in handoff"; fi
else
  fail "publish/send/work on SQLite"
fi
if $flowline migrate --database "$db" | grep -q "schema at version"; then pass; else fail "flowline migrate"; fi

echo "== flowline serve: a live server on SQLite, driven over HTTP, stopped with SIGTERM"
srv="$tmp/serve"
mkdir -p "$srv" && cp -r flows "$srv/flows"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
flowline_abs=$(cd "$(dirname "$flowline")" && pwd)/flowline
(cd "$srv" && exec "$flowline_abs" serve --port "$port" >"$srv/out.log" 2>&1) &
server=$!
up=0
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null; then up=1; break; fi
  sleep 0.1
done
key=$(grep -o 'fl_[A-Za-z0-9]*_[A-Za-z0-9]*' "$srv/out.log" | head -1)
if [ "$up" = 1 ] && [ -n "$key" ] && python3 - "$port" "$key" <<'PY'
import json, sys, time, urllib.request
port, key = sys.argv[1], sys.argv[2]
def call(method, path, body=None, auth=True):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if auth: req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req) as r: return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read() or b"null")
assert call("GET", "/v1/flows", auth=False)[0] == 401
status, flows = call("GET", "/v1/flows")
assert status == 200 and any(f["name"] == "welcome-menu" for f in flows["flows"]), flows
status, ch = call("POST", "/v1/channels", {"kind": "api", "name": "web"})
assert status == 201, ch
status, r = call("POST", f"/v1/channels/{ch['id']}/inbound", {"from": "55", "text": "hi", "id": "m1"})
assert status == 202 and r["status"] == "started", r
conv = r["conversation"]
assert call("POST", f"/v1/channels/{ch['id']}/inbound", {"from": "55", "text": "hi", "id": "m1"})[1]["status"] == "duplicate"
deadline = time.time() + 10
while time.time() < deadline:
    msgs = call("GET", f"/v1/conversations/{conv}/messages")[1]["messages"]
    if len(msgs) >= 2: break
    time.sleep(0.1)
assert [m["direction"] for m in msgs] == ["in", "out"] and msgs[1]["buttons"] == ["English", "Português"], msgs
PY
then pass; else fail "live server session"; cat "$srv/out.log"; fi
echo "== schemathesis against /openapi.json of the live server"
venv=.build-venv  # made by scripts/peers.sh
# Left out: the event stream (it holds the connection open), and the CSV import, whose body JSON Schema cannot
# describe (any string is "valid", but an unclosed quote is refused): ContactsTests drives it instead.
if [ -x "$venv/bin/schemathesis" ] && "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
     -H "Authorization: Bearer $key" --checks all -n 50 --seed 1 --exclude-path /v1/events \
     --exclude-name 'POST /v1/contacts/csv' >"$tmp/schemathesis.log" 2>&1; then
  pass
else
  fail "schemathesis found server errors or responses that contradict /openapi.json"
  grep -B2 -A14 "Server error\|Schema-violating\|Schema-valid\|Response violates\|Undocumented" "$tmp/schemathesis.log" | head -150
  tail -30 "$tmp/schemathesis.log"
  echo "-- the server's errors and warnings:"
  grep -E " (error|warning|critical) " "$srv/out.log" | tail -20
fi

kill -TERM "$server" 2>/dev/null
stopped=0
for _ in $(seq 1 100); do
  if ! kill -0 "$server" 2>/dev/null; then stopped=1; break; fi
  sleep 0.1
done
if [ "$stopped" = 1 ] && wait "$server"; then pass; else fail "serve should exit cleanly on SIGTERM"; kill -9 "$server" 2>/dev/null; fi

echo "== the Studio in headless Chromium (Debian's), driven by Playwright, against a live flowline serve"
if [ -x /usr/bin/chromium ] || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then
  .build-venv/bin/python Tests/Browser/studio_test.py "$flowline_abs" >"$tmp/studio.log" 2>&1
  studio_rc=$?
  studio_pass=$(grep -c '^PASS ' "$tmp/studio.log" || true)
  studio_fail=$(grep -c '^FAIL ' "$tmp/studio.log" || true)
  grep -E '^(PASS|FAIL) ' "$tmp/studio.log"
  passed=$((passed + studio_pass))
  failed=$((failed + studio_fail))
  if [ "$studio_fail" -gt 0 ] || [ "$studio_rc" -ne 0 ] || [ "$studio_pass" -eq 0 ]; then
    [ "$studio_fail" -eq 0 ] && fail "the browser tests did not run to the end"
    tail -60 "$tmp/studio.log"
  fi
else
  fail "could not install Debian's chromium for the browser tests"
fi

echo "== end to end through a live server on PostgreSQL: publish, converse, hand off and back, read the trace"
pgport=${FLOWLINE_TEST_POSTGRES_URL##*:}
pgport=${pgport%%/*}
"$FLOWLINE_PG_BIN/createdb" -h 127.0.0.1 -p "$pgport" -U flowline flowline_e2e 2>/dev/null || true
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret_key=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
(cd "$srv" && FLOWLINE_ADMIN_KEY=fl_e2eadmin_0123456789abcdefghijklmnopqrstuv FLOWLINE_SECRET_KEY=$secret_key \
   exec "$flowline_abs" serve --port "$port" \
   --database "postgres://flowline@127.0.0.1:$pgport/flowline_e2e" >"$srv/pg.log" 2>&1) &
server=$!
for _ in $(seq 1 150); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/ready', timeout=1)" 2>/dev/null && break
  sleep 0.1
done
if python3 scripts/e2e.py "$port" fl_e2eadmin_0123456789abcdefghijklmnopqrstuv; then pass; else fail "end to end on PostgreSQL"; tail -30 "$srv/pg.log"; fi
kill -TERM "$server" 2>/dev/null
wait "$server" || fail "serve on PostgreSQL should exit cleanly on SIGTERM"

echo "== flowline bench: a small end-to-end run, so the benchmark keeps working (figures: BENCHMARKS.md)"
if $flowline bench --postgres "$FLOWLINE_TEST_POSTGRES_URL" --only durable,http,timers,contacts --conversations 40 --messages 2 \
     --timers 200 --rates 20 --seconds 1 --connections 2 --contacts 2000 >"$tmp/bench.out" 2>&1 \
   && grep -q "ingest + turns" "$tmp/bench.out" && grep -qE "reply at the callback URL .*\| 20 in" "$tmp/bench.out" \
   && grep -q "200 timers due together: all fired" "$tmp/bench.out" \
   && grep -qE "contact filter, SQLite, 2000 contacts: tag and number range" "$tmp/bench.out"; then pass
else fail "flowline bench (small run)"; tail -20 "$tmp/bench.out"; fi

echo "$passed passed, $failed failed, ${skipped:-0} skipped"
[ "$failed" -eq 0 ]
