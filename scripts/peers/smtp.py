"""SMTP peers for the tests, on 127.0.0.1, built on aiosmtpd. Usage: smtp.py SPOOL CERT KEY STARTTLS_PORT TLS_PORT PLAIN_PORT

- STARTTLS_PORT offers STARTTLS and requires AUTH (PLAIN or LOGIN) after it: user `flowline`, password `s3cret-pass`.
- TLS_PORT speaks TLS from the first byte (implicit TLS, as on port 465), with the same AUTH.
- PLAIN_PORT offers neither TLS nor AUTH: a client configured for STARTTLS must refuse to send through it.

Every accepted message is written to SPOOL as <n>.eml (the DATA exactly as received, after dot-unstuffing) and
<n>.json (envelope: mail_from, rcpt_tos, port, auth user). Recipients steer failures: `busy@…` gets 451 (retry
later), `nobody@…` gets 550 (permanent)."""
import asyncio
import json
import os
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

spool, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
starttls_port, tls_port, plain_port = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
os.makedirs(spool, exist_ok=True)
lock = threading.Lock()
count = [0]


class Handler:
    def __init__(self, port):
        self.port = port

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("busy@"):
            return "451 4.3.0 Mailbox busy, try again later"
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with lock:
            count[0] += 1
            n = count[0]
        with open(os.path.join(spool, f"{n}.eml"), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        user = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with open(os.path.join(spool, f"{n}.json.tmp"), "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "port": self.port, "user": user}, f)
        os.rename(os.path.join(spool, f"{n}.json.tmp"), os.path.join(spool, f"{n}.json"))
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"flowline" and auth_data.password == b"s3cret-pass"
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)  # handled=False: aiosmtpd answers 535


# Implicit TLS is TLS from the first byte; aiosmtpd cannot tell and warns that AUTH is not behind STARTTLS.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)

controllers = [
    Controller(Handler(starttls_port), hostname="127.0.0.1", port=starttls_port, tls_context=tls, require_starttls=True,
               auth_require_tls=True, auth_required=True, authenticator=authenticator),
    Controller(Handler(tls_port), hostname="127.0.0.1", port=tls_port, ssl_context=tls, auth_require_tls=False,
               auth_required=True, authenticator=authenticator),
    Controller(Handler(plain_port), hostname="127.0.0.1", port=plain_port),
]
for c in controllers:
    c.start()
print("smtp peers ready", flush=True)
threading.Event().wait()
