"""Schemathesis hooks for scripts/schemathesis: DPoP authentication (RFC 9449) with a
fresh proof per request, and a record of what the server answered.

The access token and its proof key come from `export-center token` (the dev issuer of
the server under test), in the JSON file named by SCHEMATHESIS_EXPORT_CENTER_TOKEN. Each
request gets a new proof binding its method (`htm`), URL without query (`htu`), the time
(`iat`), a unique `jti`, the token (`ath`), and the last server nonce (`nonce`) when the
server asked for one with `use_dpop_nonce`. PyJWT signs it (with `cryptography`), an
implementation independent of the server's.

SCHEMATHESIS_EXPORT_CENTER_LOG names a file that gets one line per response (method,
path template, status, WWW-Authenticate error), so the script can show what was covered.
"""

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from urllib.parse import urlsplit

import jwt
import requests
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

with open(os.environ["SCHEMATHESIS_EXPORT_CENTER_TOKEN"], encoding="utf-8") as minted_file:
    MINTED = json.load(minted_file)
ACCESS_TOKEN = MINTED["accessToken"]
PROOF_KEY = serialization.load_pem_private_key(MINTED["dpopKey"].encode(), password=None)
ATH = base64.urlsafe_b64encode(hashlib.sha256(ACCESS_TOKEN.encode()).digest()).rstrip(b"=").decode()
TENANT = os.environ.get("SCHEMATHESIS_EXPORT_CENTER_TENANT", "tenant-default")
LOG = os.environ.get("SCHEMATHESIS_EXPORT_CENTER_LOG")

_nonce_lock = threading.Lock()
_nonce = None


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_jwk(key):
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}, "EdDSA"
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }, "ES256"
    raise SystemExit(f"unsupported DPoP key type {type(public).__name__}")


PROOF_JWK, PROOF_ALG = _public_jwk(PROOF_KEY)


def proof(method, url):
    """A DPoP proof for one request to `url` (its query and fragment are not bound)."""
    parts = urlsplit(url)
    claims = {
        "htm": method.upper(),
        "htu": f"{parts.scheme}://{parts.netloc}{parts.path}",
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "ath": ATH,
    }
    with _nonce_lock:
        if _nonce is not None:
            claims["nonce"] = _nonce
    return jwt.encode(claims, PROOF_KEY, algorithm=PROOF_ALG, headers={"typ": "dpop+jwt", "jwk": PROOF_JWK})


def _remember_nonce(headers):
    global _nonce
    nonce = headers.get("DPoP-Nonce")
    if nonce:
        with _nonce_lock:
            _nonce = nonce


def _base_url(case):
    return (case.operation.base_url or case.operation.schema.get_base_url()).rstrip("/")


def _request_url(case):
    """The URL as `requests` will send it: the base URL and the formatted path, quoted."""
    prepared = requests.models.PreparedRequest()
    prepared.prepare_url(_base_url(case) + case.formatted_path, None)
    return prepared.url


_probe_lock = threading.Lock()
_probed = False


def _learn_nonce(base):
    """Once: asks the server whether it wants nonces. One that does answers an
    authenticated request without one `401 use_dpop_nonce` with a `DPoP-Nonce`."""
    global _probed
    with _probe_lock:
        if _probed:
            return
        url = base + "/export-center/profiles"
        probe = requests.get(
            url,
            headers={
                "Authorization": f"DPoP {ACCESS_TOKEN}",
                "DPoP": proof("GET", url),
                "X-StellaOps-Tenant": TENANT,
            },
            timeout=10,
        )
        _remember_nonce(probe.headers)
        _probed = True


@schemathesis.auth(refresh_interval=None)
class DPoP:
    """`Authorization: DPoP <token>` with a proof minted for this very request."""

    def get(self, case, context):
        return ACCESS_TOKEN

    def set(self, case, data, context):
        _learn_nonce(_base_url(case))
        url = _request_url(case)
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"DPoP {data}"
        case.headers["DPoP"] = proof(case.method, url)


@schemathesis.hook
def after_call(context, case, response):
    _remember_nonce(response.headers)
    if LOG:
        challenge = response.headers.get("WWW-Authenticate", "")
        error = challenge.split('error="', 1)[1].split('"', 1)[0] if 'error="' in challenge else ""
        line = json.dumps([case.method, case.path, response.status_code, error])
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(line + "\n")
