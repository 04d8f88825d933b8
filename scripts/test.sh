#!/usr/bin/env bash
# Flowline's whole test suite: starts a throw-away PostgreSQL (installing it from Debian's packages if
# missing), builds the package, runs the Swift Testing suites against SQLite and PostgreSQL, then drives the
# `flowline` CLI over the example flows and the broken-flow corpus. Ends with one line "N passed, N failed".
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
if [ -z "$total" ]; then
  fail "swift test did not report a test run"
else
  bad_tests=$(grep -E '^✘ Test .* failed after' "$log" | wc -l)
  passed=$((passed + total - bad_tests))
  failed=$((failed + bad_tests))
  [ "$bad" -gt 0 ] && echo "swift test: $bad_tests failing test(s)"
fi
rm -f "$log"

flowline=.build/debug/flowline
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; bash scripts/postgres.sh stop "$FLOWLINE_PG_DIR"' EXIT

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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
