#!/usr/bin/env python3
"""Checks Export Center DSSE envelopes with an independent implementation, securesystemslib.

    verify_dsse.py verify ENVELOPE.json PUBLIC.pem
        Verifies the envelope with the key (ed25519 or ecdsa-sha2-nistp256), whose keyid is
        computed here, independently, as the hex SHA-256 of its SPKI DER. Prints the keyid,
        payloadType and payload length; exits 1 when the envelope does not verify.

    verify_dsse.py sign PRIVATE.pem PAYLOAD_TYPE PAYLOAD_FILE
        Signs the payload with securesystemslib and prints the envelope JSON, so the Rust
        side can show that it verifies envelopes it did not make.

Needs `pip install 'securesystemslib[crypto]'`.
"""

import hashlib
import json
import sys

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey


def sslib_key(public_key):
    """An SSlibKey whose keyid follows the Export Center rule, not securesystemslib's default."""
    spki_der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    keyid = hashlib.sha256(spki_der).hexdigest()
    return SSlibKey.from_crypto(public_key, keyid=keyid)


def verify(envelope_path, public_pem_path):
    with open(public_pem_path, "rb") as f:
        key = sslib_key(load_pem_public_key(f.read()))
    with open(envelope_path, "rb") as f:
        envelope = Envelope.from_dict(json.load(f))
    try:
        envelope.verify([key], 1)
    except VerificationError as err:
        print(f"envelope does not verify with {key.scheme} key {key.keyid}: {err}", file=sys.stderr)
        return 1
    print(f"verified {key.scheme} {key.keyid} {envelope.payload_type} {len(envelope.payload)}")
    return 0


def sign(private_pem_path, payload_type, payload_path):
    with open(private_pem_path, "rb") as f:
        private_key = load_pem_private_key(f.read(), password=None)
    signer = CryptoSigner(private_key, sslib_key(private_key.public_key()))
    with open(payload_path, "rb") as f:
        envelope = Envelope(f.read(), payload_type, {})
    envelope.sign(signer)
    print(json.dumps(envelope.to_dict()))
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "verify":
        return verify(argv[1], argv[2])
    if len(argv) == 4 and argv[0] == "sign":
        return sign(argv[1], argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
