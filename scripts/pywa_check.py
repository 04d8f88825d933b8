"""An independent check of Flowline's WhatsApp webhook handling: pywa (a Python WhatsApp library) parses the
notification fixtures that Tests/ConnectorsTests/WhatsApp/WhatsAppWebhookTests.swift parses with Flowline's own code, and
checks the same signatures; both must agree with Fixtures/whatsapp/expected.json. Usage: pywa_check.py"""
import json
import os
import sys

from pywa import WhatsApp, utils
from pywa.types import CallbackButton, CallbackSelection, Message, MessageStatus

root = os.path.join(os.path.dirname(__file__), "..", "Tests", "ConnectorsTests", "WhatsApp", "Fixtures", "whatsapp")
expected = json.load(open(os.path.join(root, "expected.json"), encoding="utf-8"))
wa = WhatsApp(phone_id="106540352242922", token="unused", server=None, verify_token=None)
failures = []


def parsed(update):
    """What pywa reads from a one-message notification, in expected.json's terms."""
    value = update["entry"][0]["changes"][0]["value"]
    if "statuses" in value:
        s = MessageStatus.from_update(wa, update)
        return {"kind": "status", "id": s.id, "status": str(s.status), "error_codes": [s.error.code] if s.error else []}
    raw_type = value["messages"][0]["type"]
    if raw_type in ("interactive", "button"):
        kind = CallbackSelection if value["messages"][0].get("interactive", {}).get("type") == "list_reply" else CallbackButton
        c = kind.from_update(wa, update)
        user, text, payload, media, location = c.from_user, c.title, c.data, None, None
        msg_id = c.id
    else:
        m = Message.from_update(wa, update)
        user, payload, msg_id = m.from_user, None, m.id
        media = m.media.id if m.media else None
        location = {"latitude": m.location.latitude, "longitude": m.location.longitude} if m.location else None
        text = m.text or (m.caption if hasattr(m, "caption") else None) or (m.location.name if m.location else None) or ""
    return {"kind": "message", "id": msg_id, "type": raw_type, "user_id": user.bsuid, "wa_id": user.wa_id, "name": user.name,
            "text": text, "payload": payload, "media_id": media, "location": location}


checked = 0
for name, want in sorted(expected["notifications"].items()):
    if "pywa" in want:
        print(f"skip {name}: {want['pywa']}")
        continue
    update = json.load(open(os.path.join(root, name), encoding="utf-8"))
    got = parsed(update)
    checked += 1
    want = {k: v for k, v in want.items() if k in got}
    if got != want:
        failures.append(f"{name}: pywa read {got}, expected {want}")

for case in expected["signatures"]:
    body = open(os.path.join(root, case["file"]), "rb").read()
    got = bool(case["header"]) and utils.webhook_updates_validator(case["secret"], body, case["header"])
    if got != case["valid"]:
        failures.append(f"signature {case}: pywa says {got}")

for f in failures:
    print("FAIL", f)
print(f"pywa agrees on {checked} notifications and {len(expected['signatures'])} signatures"
      if not failures else f"{len(failures)} disagreement(s)")
sys.exit(1 if failures else 0)
