"""End to end through a live `flowline serve`: publish a flow through the API, drive a conversation over the
api channel, including a handoff to an agent and back, and read the trace. Replies also arrive at a callback
receiver here, whose signatures are checked with Python's own hmac. Usage: e2e.py PORT ADMIN_KEY"""
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time
import urllib.error
import urllib.request

port, key = sys.argv[1], sys.argv[2]


def call(method, path, body=None, key=key, raw=None, ctype="application/json"):
    data = raw.encode() if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_for(predicate, what, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


FLOW = """flow: e2e-support
trigger: { channel: api, keywords: [help] }
start: ask
blocks:
  ask:
    ask: "What is your name?"
    save: name
    next: agent
  agent:
    handoff: { queue: support, message: "Connecting you, {{ name }}." }
    next: bye
  bye:
    end: "Back with the bot. Bye {{ name }}!"
"""

status, r = call("PUT", "/v1/flows/e2e-support", raw=FLOW, ctype="application/yaml")
assert status in (200, 201) and r["valid"], r
status, r = call("POST", "/v1/flows/e2e-support/publish")
assert status == 201, r
status, agent = call("POST", "/v1/keys", {"role": "agent", "label": "e2e agent"})
assert status == 201, agent


class Callbacks(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Callbacks.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callbacks)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
callback = f"http://127.0.0.1:{receiver.server_address[1]}/replies"
status, channel = call("POST", "/v1/channels", {"kind": "api", "name": "e2e", "callback_url": callback})
assert status == 201 and channel["signed"] and channel["signing_secret"].startswith("whsec_"), channel
assert "signing_secret" not in call("GET", "/v1/channels")[1]["channels"][0], "the secret is shown once"
inbound = f"/v1/channels/{channel['id']}/inbound"

status, r = call("POST", inbound, {"from": "e2e-contact", "text": "help please", "id": "e1"})
assert status == 202 and r["status"] == "started", r
conv = r["conversation"]
assert call("POST", inbound, {"from": "e2e-contact", "text": "help please", "id": "e1"})[1]["status"] == "duplicate"


def messages():
    return call("GET", f"/v1/conversations/{conv}/messages")[1]["messages"]


wait_for(lambda: len(messages()) >= 2, "the first question")
call("POST", inbound, {"from": "e2e-contact", "text": "Rita", "id": "e2"})
inbox = wait_for(lambda: call("GET", "/v1/inbox?queue=support", key=agent["key"])[1]["conversations"], "the handoff")
assert inbox[0]["id"] == conv, inbox
assert call("POST", f"/v1/inbox/{conv}/claim", key=agent["key"])[0] == 200
assert call("POST", f"/v1/inbox/{conv}/messages", {"text": "Hi Rita, how can I help?"}, key=agent["key"])[0] == 202
call("POST", inbound, {"from": "e2e-contact", "text": "My order is late", "id": "e3"})
assert call("POST", f"/v1/conversations/{conv}/handback", key=agent["key"])[0] == 202
wait_for(lambda: call("GET", f"/v1/conversations/{conv}")[1]["status"] == "ended", "the end")

texts = [(m["direction"], m["text"]) for m in messages()]
assert texts == [
    ("in", "help please"), ("out", "What is your name?"), ("in", "Rita"), ("out", "Connecting you, Rita."),
    ("out", "Hi Rita, how can I help?"), ("in", "My order is late"), ("out", "Back with the bot. Bye Rita!"),
], texts
trace = call("GET", f"/v1/conversations/{conv}")[1]["trace"]
assert [t["visited"] for t in trace if t["visited"]] == [["ask"], ["agent"], ["bye"]], trace

# Every reply reached the callback once, signed over "t.body" with the secret shown at creation.
outbound = [t for d, t in texts if d == "out"]
wait_for(lambda: len(Callbacks.received) >= len(outbound), "the callbacks")
secret = channel["signing_secret"].encode()
keys = set()
for headers, body in Callbacks.received:
    fields = dict(part.split("=", 1) for part in headers["Flowline-Signature"].split(","))
    expected = hmac.new(secret, fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected), headers
    assert abs(int(fields["t"]) - time.time()) < 300
    keys.add(headers["Idempotency-Key"])
    assert json.loads(body)["conversation"] == conv
assert len(keys) == len(Callbacks.received) == len(outbound), (keys, outbound)
assert sorted(json.loads(b)["text"] for _, b in Callbacks.received) == sorted(outbound)
print("e2e: conversation", conv, "ended with", len(texts), "messages and", len(trace), "traced turns")
