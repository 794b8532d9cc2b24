"""Verifies one delivery with the official Standard Webhooks library for Python, unmodified.

Usage: python3 standard_webhooks.py <secret>  (stdin: {"headers": {...}, "body": "..."})
Prints "valid" and exits 0, or prints the library's error and exits 1.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

delivery = json.load(sys.stdin)
try:
    Webhook(sys.argv[1]).verify(delivery["body"], delivery["headers"])
except Exception as error:  # the library raises its own WebhookVerificationError
    print(f"invalid: {error!r}")
    sys.exit(1)
print("valid")
