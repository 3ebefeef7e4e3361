#!/usr/bin/env python3
"""A tiny webhook receiver for trying Herald locally (Python standard library only).

Prints each webhook and, when WEBHOOK_SECRET is set (the endpoint's whsec_... secret),
verifies its Standard Webhooks signature.

    WEBHOOK_SECRET=whsec_... python3 examples/receiver.py 9000
"""
import base64, hashlib, hmac, http.server, os, sys


def verify(secret, headers, body):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split(" "))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        secret = os.environ.get("WEBHOOK_SECRET")
        verdict = "" if not secret else (" signature OK" if verify(secret, self.headers, body) else " BAD SIGNATURE")
        print(f"{self.headers['webhook-id']} at {self.headers['webhook-timestamp']}{verdict}: {body.decode()}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
print(f"listening on http://127.0.0.1:{port}/", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
