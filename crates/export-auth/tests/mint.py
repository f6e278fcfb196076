#!/usr/bin/env python3
"""Mints DPoP-bound access tokens and DPoP proofs with an independent JOSE implementation
(PyJWT on `cryptography`), so the Rust verifier is not only tested against its own signer.

    mint.py OUT_DIR METHOD URL ISSUER AUDIENCE TENANT

Creates ES256, RS256 and EdDSA issuer keys and writes their JWKS to OUT_DIR/jwks.json,
creates EdDSA and ES256 DPoP keys, computes their RFC 7638 thumbprints here, and prints
JSON: {"jwks_path", "method", "url", "dpop_jwk", "jkt", "cases": [{"name", "token",
"proof", "expect"}]}, where "expect" is "ok", "invalid_token" or "invalid_dpop_proof".
Every "ok" case has a matching set of tampered variants that must be refused.

Needs `pip install pyjwt cryptography`.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
except ImportError as error:
    print(f"missing python packages ({error}): run `pip install pyjwt cryptography`", file=sys.stderr)
    sys.exit(3)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def int_bytes(value, length=None):
    return value.to_bytes(length or (value.bit_length() + 7) // 8, "big")


def public_jwk(private_key):
    """The public JWK members of a key, computed from the raw numbers."""
    public = private_key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64(int_bytes(numbers.x, 32)), "y": b64(int_bytes(numbers.y, 32))}
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    numbers = public.public_numbers()
    return {"kty": "RSA", "n": b64(int_bytes(numbers.n)), "e": b64(int_bytes(numbers.e))}


def thumbprint(jwk):
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    required = {"EC": ["crv", "kty", "x", "y"], "OKP": ["crv", "kty", "x"], "RSA": ["e", "kty", "n"]}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


def private_d(private_key):
    """The private scalar of an Ed25519 key, as a JWK `d` member."""
    raw = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return b64(raw)


def main():
    out_dir, method, url, issuer, audience, tenant = sys.argv[1:7]
    now = int(time.time())

    issuers = {
        "ES256": ("py-es256", ec.generate_private_key(ec.SECP256R1())),
        "RS256": ("py-rs256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "EdDSA": ("py-eddsa", ed25519.Ed25519PrivateKey.generate()),
    }
    keys = [dict(public_jwk(key), kid=kid, alg=alg, use="sig") for alg, (kid, key) in issuers.items()]
    jwks_path = os.path.join(out_dir, "jwks.json")
    with open(jwks_path, "w") as f:
        json.dump({"keys": keys}, f)

    dpop_ed = ed25519.Ed25519PrivateKey.generate()
    dpop_ec = ec.generate_private_key(ec.SECP256R1())
    other_ed = ed25519.Ed25519PrivateKey.generate()
    jwk_ed, jwk_ec = public_jwk(dpop_ed), public_jwk(dpop_ec)
    jkt_ed, jkt_ec = thumbprint(jwk_ed), thumbprint(jwk_ec)

    def token(alg, jkt, typ="at+jwt", **overrides):
        kid, key = issuers[alg]
        claims = {
            "iss": issuer,
            "aud": [audience, "another-audience"],
            "sub": "python-client",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "scope": "export:read export:write",
            "stellaops:tenant": tenant,
            "cnf": {"jkt": jkt},
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": typ})

    def proof(access_token, key=dpop_ed, jwk=None, alg="EdDSA", **overrides):
        claims = {
            "jti": str(uuid.uuid4()),
            "htm": method,
            "htu": url,
            "iat": now,
            "ath": b64(hashlib.sha256(access_token.encode()).digest()),
        }
        claims.update(overrides)
        header = {"typ": "dpop+jwt", "jwk": jwk or public_jwk(key)}
        return jwt.encode(claims, key, algorithm=alg, headers=header)

    def tamper_payload(compact, **changes):
        header, payload, signature = compact.split(".")
        claims = json.loads(b64_decode(payload))
        claims.update(changes)
        return ".".join([header, b64(json.dumps(claims).encode()), signature])

    def tamper_signature(compact):
        header, payload, signature = compact.split(".")
        raw = bytearray(b64_decode(signature))
        raw[len(raw) // 2] ^= 0x01
        return ".".join([header, payload, b64(bytes(raw))])

    def hs256_with_public_key(claims):
        """The classic alg-confusion attack: HMAC keyed with the issuer's public key."""
        public_pem = issuers["ES256"][1].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = b64(json.dumps({"alg": "HS256", "kid": "py-es256", "typ": "at+jwt"}).encode())
        body = b64(json.dumps(claims).encode())
        signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{b64(signature)}"

    cases = []

    def case(name, access_token, dpop_proof, expect):
        cases.append({"name": name, "token": access_token, "proof": dpop_proof, "expect": expect})

    es256 = token("ES256", jkt_ed)
    case("es256 token, eddsa proof", es256, proof(es256), "ok")
    rs256 = token("RS256", jkt_ed)
    case("rs256 token, eddsa proof", rs256, proof(rs256), "ok")
    eddsa = token("EdDSA", jkt_ec)
    case("eddsa token, es256 proof", eddsa, proof(eddsa, key=dpop_ec, alg="ES256"), "ok")
    scp = token("ES256", jkt_ed, scope=None, scp=["export:read"], tid=tenant, aud=audience, **{"stellaops:tenant": None})
    case("scp array, tid and string aud", scp, proof(scp), "ok")

    media_type = token("ES256", jkt_ed, typ="application/at+jwt")
    case("token typed as the full media type", media_type, proof(media_type), "ok")
    # RFC 9068: an ID token or any other JWT of the issuer is not an access token.
    for typ in ["JWT", "dpop+jwt"]:
        other_jwt = token("ES256", jkt_ed, typ=typ)
        case(f"token typed {typ}", other_jwt, proof(other_jwt), "invalid_token")

    for alg, access_token in [("es256", es256), ("rs256", rs256), ("eddsa", eddsa)]:
        changed = tamper_payload(access_token, **{"stellaops:tenant": "someone-else"})
        key, proof_alg = (dpop_ec, "ES256") if alg == "eddsa" else (dpop_ed, "EdDSA")
        case(f"{alg} token with a changed payload", changed, proof(changed, key=key, alg=proof_alg), "invalid_token")
        broken = tamper_signature(access_token)
        case(f"{alg} token with a changed signature", broken, proof(broken, key=key, alg=proof_alg), "invalid_token")

    forged_issuer = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(
        json.loads(b64_decode(es256.split(".")[1])), forged_issuer, algorithm="ES256",
        headers={"kid": "py-es256", "typ": "at+jwt"},
    )
    case("token signed by another key under a known kid", forged, proof(forged), "invalid_token")
    confused = hs256_with_public_key(json.loads(b64_decode(es256.split(".")[1])))
    case("hs256 token keyed with the issuer public key", confused, proof(confused), "invalid_token")
    expired = token("ES256", jkt_ed, iat=now - 600, nbf=now - 600, exp=now - 300)
    case("expired token", expired, proof(expired), "invalid_token")
    wrong_issuer = token("ES256", jkt_ed, iss="https://elsewhere.example")
    case("token from another issuer", wrong_issuer, proof(wrong_issuer), "invalid_token")

    case("proof signed by a key other than cnf.jkt", es256, proof(es256, key=other_ed), "invalid_dpop_proof")
    case("proof with a changed payload", es256, tamper_payload(proof(es256), htm="DELETE"), "invalid_dpop_proof")
    case("proof with a changed signature", es256, tamper_signature(proof(es256)), "invalid_dpop_proof")
    with_d = dict(jwk_ed, d=private_d(dpop_ed))
    case("proof jwk with the private key", es256, proof(es256, jwk=with_d), "invalid_dpop_proof")
    case("proof for another url", es256, proof(es256, htu=url + "/other"), "invalid_dpop_proof")
    case("proof for another method", es256, proof(es256, htm="DELETE" if method != "DELETE" else "GET"), "invalid_dpop_proof")
    case("proof with the ath of another token", es256, proof(es256, ath=b64(hashlib.sha256(b"x").digest())), "invalid_dpop_proof")
    case("stale proof", es256, proof(es256, iat=now - 600), "invalid_dpop_proof")

    json.dump({
        "jwks_path": jwks_path,
        "method": method,
        "url": url,
        "dpop_jwk": jwk_ed,
        "jkt": jkt_ed,
        "cases": cases,
    }, sys.stdout)


if __name__ == "__main__":
    main()
