#!/usr/bin/env bash
# Starts the protocol peers the tests talk to, each on 127.0.0.1 and a free port, from a venv (.build-venv):
# localstripe (Stripe PaymentIntents and signed webhooks), aiosmtpd (SMTP with STARTTLS and AUTH, and implicit
# TLS), fakellm (OpenAI-compatible chat completions). Prints `export` lines for FLOWLINE_TEST_* and
# FLOWLINE_PEERS_DIR; `scripts/peers.sh stop DIR` stops them. The venv also holds Playwright, for the Studio's
# browser tests (which drive Debian's chromium: Playwright's own browser download is not used).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "stop" ]; then
  dir="$2"
  for pid in "$dir"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  rm -rf "$dir"
  exit 0
fi

venv=.build-venv
packages=(schemathesis==4.32.5 localstripe==1.15.10 aiosmtpd==1.4.6 fakellm==0.3.5 pywa==4.5.0 playwright==1.65.2)
if ! "$venv/bin/python" -c 'import schemathesis, localstripe, aiosmtpd, fakellm, pywa, playwright' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "${packages[@]}" >&2
fi
py="$venv/bin/python"
dir=$(mktemp -d /tmp/flowline-peers.XXXXXX)
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), timeout=0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "peer on port $1 did not start" >&2
  return 1
}

# localstripe binds every interface by default: bind it to loopback from Python.
stripe_port=$(free)
"$py" -c "
import sys, localstripe.server as s
from aiohttp import web
web.run_app(s.app, host='127.0.0.1', port=int(sys.argv[1]), print=None)
" "$stripe_port" >"$dir/localstripe.log" 2>&1 &
echo $! >"$dir/localstripe.pid"

# aiosmtpd: STARTTLS with AUTH, implicit TLS, and plain, under a throw-away certificate for localhost.
command -v openssl >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq openssl >&2; }
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/smtp-key.pem" -out "$dir/smtp-cert.pem" -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1
smtp_ports="$(free),$(free),$(free)"
"$py" scripts/peers/smtp.py "$dir/spool" "$dir/smtp-cert.pem" "$dir/smtp-key.pem" ${smtp_ports//,/ } >"$dir/smtp.log" 2>&1 &
echo $! >"$dir/smtp.pid"

llm_port=$(free)
"$venv/bin/fakellm" serve --host 127.0.0.1 --port "$llm_port" --config scripts/peers/fakellm.yaml >"$dir/fakellm.log" 2>&1 &
echo $! >"$dir/fakellm.pid"

wait_port "$stripe_port"
wait_port "$llm_port"
for p in ${smtp_ports//,/ }; do wait_port "$p"; done
echo "export FLOWLINE_PEERS_DIR=$dir"
echo "export FLOWLINE_TEST_SMTP=$smtp_ports FLOWLINE_TEST_SMTP_CA=$dir/smtp-cert.pem FLOWLINE_TEST_SMTP_SPOOL=$dir/spool"
echo "export FLOWLINE_TEST_LOCALSTRIPE=http://127.0.0.1:$stripe_port"
echo "export FLOWLINE_TEST_FAKELLM=http://127.0.0.1:$llm_port/v1"
