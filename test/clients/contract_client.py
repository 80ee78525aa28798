"""A client of the contract's REST API as its Python users write one (requests, data=json.dumps).

usage: contract_client.py BASE_URL API_KEY MODE BODY_JSON
Prints one JSON line: {"status", "id", "download_urls", "png_bytes"}; exits non-zero on failure.
"""
import json
import sys
import time

import requests

base, key, mode, body = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
headers = {"API-Key": key}

# The usual way people call it: the body as a string, no JSON content type.
r = requests.post(f"{base}/sd/{mode}/v1", headers=headers, data=json.dumps(body), timeout=30)
r.raise_for_status()
reply = r.json()
if reply["status"] == "FAILURE":
    print(json.dumps(reply))
    sys.exit(1)

deadline = time.time() + 60
while reply["status"] == "PENDING":
    if time.time() > deadline:
        sys.exit("timed out waiting for SUCCESS")
    time.sleep(0.05)
    reply = requests.get(f"{base}/sd/{mode}/v1/status/{reply['id']}", headers=headers, timeout=30).json()

sizes = []
for url in reply.get("download_urls", []):
    image = requests.get(url, timeout=30)
    image.raise_for_status()
    assert image.content[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    sizes.append(len(image.content))

print(json.dumps({"status": reply["status"], "id": reply.get("id"), "download_urls": reply.get("download_urls"), "png_bytes": sizes}))
sys.exit(0 if reply["status"] == "SUCCESS" else 1)
