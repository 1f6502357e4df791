"""SECURITY-CASES "Tokens" 1-10 and 12-14, each on every protected operation."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlmodel import Session

from tests.operations import bearer
from tests.security.conftest import Api
from tests.security.every_operation import (
    INVALID,
    MISSING,
    NOTHING_STORED,
    call_every_operation,
    every,
    refused_operations,
    stored_rows,
)
from tests.security.support import (
    DROP,
    JWKS_PATH,
    JwksServer,
    Keys,
    SigningKey,
    b64url,
    change_payload,
    craft,
    flip_signature_bit,
    hmac_signer,
    repeat_segments,
    strip_signature,
    with_alphabet,
)

TokenBuilder = Callable[[Api], str]
ClaimChanges = Callable[[int], dict[str, Any]]


def assert_refused_everywhere(api: Api, db: Session, token: str) -> None:
    """401/invalid on every operation, the token never echoed, nothing stored."""
    answers = call_every_operation(api.client, api.subject, bearer(token), token=token)

    assert answers == every(INVALID)
    assert stored_rows(db) == NOTHING_STORED


# Case 1-4: where the token is (or is not) -------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Basic YWxpY2U6c2VjcmV0", id="basic"),
        pytest.param("Bearer", id="bearer-alone"),
        pytest.param("Bearer ", id="bearer-space"),
    ],
)
def test_case_01_missing_credentials_are_401_missing(
    api: Api, db: Session, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    answers = call_every_operation(api.client, api.subject, headers)

    assert answers == every(MISSING)
    assert stored_rows(db) == NOTHING_STORED


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_case_02_scheme_in_any_case_is_accepted(api: Api, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {api.token()}"}

    assert refused_operations(api.client, api.subject, headers) == {}


@pytest.mark.parametrize("where", ["query", "cookie"])
def test_case_03_token_outside_the_header_is_401_missing(api: Api, db: Session, where: str) -> None:
    token = api.token()
    names = ("access_token", "token", "better-auth.session_token")
    params = dict.fromkeys(names, token) if where == "query" else None
    cookie = {"Cookie": "; ".join(f"{name}={token}" for name in names)}

    answers = call_every_operation(
        api.client, api.subject, cookie if where == "cookie" else {}, params=params, token=token
    )

    assert answers == every(MISSING)
    assert stored_rows(db) == NOTHING_STORED


@pytest.mark.parametrize("second_subject", ["alice", "bob"])
def test_case_04_two_authorization_headers_are_refused(
    api: Api, db: Session, second_subject: str
) -> None:
    first, second = api.token(), api.token(sub=second_subject)
    headers = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]

    answers = call_every_operation(api.client, api.subject, headers, token=first)

    served = {op: answer for op, answer in answers.items() if answer.status not in (400, 401)}
    assert served == {}
    assert not any(answer.leaks_token for answer in answers.values())
    assert stored_rows(db) == NOTHING_STORED


# Case 5: not a token at all ----------------------------------------------------------------


def _with_header(api: Api, header: bytes) -> str:
    _, payload, signature = api.token().split(".")
    return f"{b64url(header)}.{payload}.{signature}"


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda api: api.token(pad="x" * 9000), id="over-8KiB"),
        pytest.param(lambda api: "correct horse battery staple", id="random-words"),
        pytest.param(lambda api: "Zm9v.YmFy.YmF6", id="random-3-segments"),
        pytest.param(lambda api: "null", id="null"),
        pytest.param(lambda api: "sess_2b7c9f0e4d1a4f6b8c3e5a7d9f1b3c5e", id="session-id"),
        pytest.param(lambda api: "3uR9sXz1QmL0aB7cVdE2fG4hJ6kN8pT5", id="better-auth-session"),
        pytest.param(lambda api: repeat_segments(api.token(), 1), id="1-segment"),
        pytest.param(lambda api: repeat_segments(api.token(), 2), id="2-segments"),
        pytest.param(lambda api: repeat_segments(api.token(), 4), id="4-segments"),
        pytest.param(lambda api: repeat_segments(api.token(), 5), id="5-segments"),
        pytest.param(lambda api: "..", id="empty-segments"),
        pytest.param(lambda api: api.token().replace(".", ".*", 1), id="star-in-payload"),
        pytest.param(lambda api: api.token() + "!", id="bang-in-signature"),
        pytest.param(
            lambda api: with_alphabet(lambda nonce: api.token(nonce=nonce), "-_", "+/"),
            id="plus-slash",
        ),
        pytest.param(lambda api: api.token().replace(".", ". ", 1), id="space-inside"),
        pytest.param(lambda api: _with_header(api, b"\xff\xfe{}"), id="header-not-utf8"),
        pytest.param(lambda api: _with_header(api, b"[]"), id="header-a-list"),
        pytest.param(lambda api: _with_header(api, b"[" * 2000 + b"]" * 2000), id="header-deep"),
    ],
)
def test_case_05_malformed_token_is_401_invalid(api: Api, db: Session, build: TokenBuilder) -> None:
    assert_refused_everywhere(api, db, build(api))


# Case 6-8: signatures and algorithms ------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_case_06_alg_none_is_401_invalid(api: Api, db: Session, alg: str) -> None:
    header = api.signer.default_header() | {"alg": alg}
    token = craft(header, api.claims(), lambda message: b"")

    assert_refused_everywhere(api, db, token)


def _public_material(key: SigningKey, form: str, server: JwksServer) -> bytes:
    """The issuer's public key in a form an HMAC library might take for a secret."""
    public = key.private.public_key()
    if form == "pem":
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if form == "jwk-json":
        return json.dumps(key.public_jwk()).encode()
    if form == "jwks-document":
        return json.dumps(server.document).encode()
    raw_formats = {
        "EdDSA": (serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "ES256": (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
        "RS256": (serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
    }
    return public.public_bytes(*raw_formats[key.alg])


@pytest.mark.parametrize("form", ["raw", "pem", "jwk-json", "jwks-document"])
@pytest.mark.parametrize("key_name", ["ed", "rsa", "ec"])
def test_case_07_hs256_signed_with_the_public_key_is_401_invalid(
    jwks_api: Api, db: Session, keys: Keys, key_name: str, form: str
) -> None:
    key: SigningKey = getattr(keys, key_name)
    secret = _public_material(key, form, jwks_api.server)
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}

    assert_refused_everywhere(jwks_api, db, craft(header, jwks_api.claims(), hmac_signer(secret)))


@pytest.mark.parametrize(
    ("alg", "kid_of", "signed_by"),
    [
        pytest.param("ES256", "ed", "ec", id="ES256-on-Ed25519-kid"),
        pytest.param("EdDSA", "ec", "ed", id="EdDSA-on-EC-kid"),
        pytest.param("RS256", "ec", "rsa", id="RS256-on-EC-kid"),
        pytest.param("ES256", "rsa", "ec", id="ES256-on-RSA-kid"),
        pytest.param("PS256", "ed", "rsa", id="PS256-on-Ed25519-kid"),
        pytest.param("EdDSA", "rsa", "ed", id="EdDSA-on-RSA-kid"),
    ],
)
def test_case_07_alg_that_does_not_fit_the_key_is_401_invalid(
    jwks_api: Api, db: Session, keys: Keys, alg: str, kid_of: str, signed_by: str
) -> None:
    """Signed by a real issuer key of the algorithm's type, under another key's `kid`."""
    signer: SigningKey = getattr(keys, signed_by)
    header = {"alg": alg, "kid": getattr(keys, kid_of).kid}

    assert_refused_everywhere(jwks_api, db, signer.sign(jwks_api.claims(), header))


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda api: flip_signature_bit(api.token()), id="flipped-signature-bit"),
        pytest.param(lambda api: change_payload(api.token()), id="changed-payload"),
        pytest.param(lambda api: strip_signature(api.token()), id="stripped-signature"),
    ],
)
def test_case_08_tampered_token_is_401_invalid(api: Api, db: Session, build: TokenBuilder) -> None:
    assert_refused_everywhere(api, db, build(api))


@pytest.mark.parametrize("key_name", ["ed", "rsa", "ec"])
def test_case_08_other_key_reusing_a_real_kid_is_401_invalid(
    jwks_api: Api, db: Session, keys: Keys, key_name: str
) -> None:
    real: SigningKey = getattr(keys, key_name)
    impostor: SigningKey = getattr(keys, f"attacker_{key_name}").with_kid(real.kid)

    assert_refused_everywhere(jwks_api, db, impostor.sign(jwks_api.claims()))


# Case 9-10: what the header names ---------------------------------------------------------

HeaderTrick = Callable[[Keys, JwksServer], tuple[SigningKey, dict[str, Any]]]


@pytest.mark.parametrize(
    "trick",
    [
        pytest.param(
            lambda keys, evil: (keys.attacker_ed, {"jwk": keys.attacker_ed.public_jwk()}),
            id="jwk-attacker-kid",
        ),
        pytest.param(
            lambda keys, evil: (
                keys.attacker_ed.with_kid("ed-1"),
                {"jwk": keys.attacker_ed.with_kid("ed-1").public_jwk()},
            ),
            id="jwk-real-kid",
        ),
        pytest.param(
            lambda keys, evil: (
                keys.attacker_ed,
                {"kid": DROP, "jwk": keys.attacker_ed.public_jwk()},
            ),
            id="jwk-no-kid",
        ),
        pytest.param(lambda keys, evil: (keys.attacker_ed, {"jku": evil.url}), id="jku"),
        pytest.param(
            lambda keys, evil: (keys.attacker_ed.with_kid("ed-1"), {"jku": evil.url}),
            id="jku-real-kid",
        ),
        pytest.param(
            lambda keys, evil: (keys.attacker_rsa, {"x5u": f"{evil.base}/cert.pem"}), id="x5u"
        ),
    ],
)
def test_case_09_key_named_by_the_header_is_never_used_nor_fetched(
    jwks_api: Api, db: Session, keys: Keys, attacker_server: JwksServer, trick: HeaderTrick
) -> None:
    key, header = trick(keys, attacker_server)

    assert_refused_everywhere(jwks_api, db, key.sign(jwks_api.claims(), header))
    assert attacker_server.requests == []


@pytest.mark.parametrize(
    "kid",
    [
        pytest.param("../../etc/passwd", id="path-traversal"),
        pytest.param("' OR '1'='1' --", id="sql"),
        pytest.param("ed-1'; DROP TABLE users; --", id="sql-after-real-kid"),
        pytest.param("x" * 10240, id="10KB"),
        pytest.param("x" * 4096, id="4KB"),
        pytest.param(7, id="number"),
        pytest.param({"kid": "ed-1"}, id="object"),
        pytest.param(["ed-1"], id="list"),
        pytest.param(True, id="true"),
        pytest.param("", id="empty"),
        pytest.param("ED-1", id="other-case"),
        pytest.param("ed-1 ", id="trailing-space"),
    ],
)
def test_case_10_odd_kid_is_401_invalid(
    jwks_api: Api, db: Session, keys: Keys, jwks_server: JwksServer, kid: object
) -> None:
    """Signed by the real Ed25519 key: only the `kid` is wrong."""
    assert_refused_everywhere(jwks_api, db, keys.ed.sign(jwks_api.claims(), {"kid": kid}))
    assert set(jwks_server.requests) <= {JWKS_PATH}


# Case 12-14: claims and type --------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(lambda now: {"iat": now - 600, "exp": now - 31}, id="expired-31s"),
        pytest.param(lambda now: {"nbf": now + 60}, id="nbf-in-future"),
        pytest.param(lambda now: {"iat": now + 60, "exp": now + 660}, id="iat-in-future"),
        pytest.param(lambda now: {"exp": DROP}, id="no-exp"),
        pytest.param(lambda now: {"exp": str(now + 600)}, id="exp-string"),
        pytest.param(lambda now: {"exp": 10**20}, id="exp-absurdly-large"),
        pytest.param(lambda now: {"exp": float("inf")}, id="exp-infinity"),
        pytest.param(lambda now: {"exp": True}, id="exp-true"),
        pytest.param(lambda now: {"sub": ""}, id="empty-sub"),
        pytest.param(lambda now: {"sub": DROP}, id="no-sub"),
        pytest.param(lambda now: {"sub": None}, id="sub-null"),
        pytest.param(lambda now: {"sub": 42}, id="sub-number"),
        pytest.param(lambda now: {"sub": ["alice"]}, id="sub-list"),
        pytest.param(lambda now: {"sub": {"id": "alice"}}, id="sub-object"),
    ],
)
def test_case_12_bad_time_or_subject_claim_is_401_invalid(
    api: Api, db: Session, changes: ClaimChanges
) -> None:
    now = api.claims()["iat"]

    assert_refused_everywhere(api, db, api.token(**changes(now)))


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"iss": "https://evil.example.com"}, id="wrong-iss"),
        pytest.param({"iss": "https://auth.example.com/"}, id="iss-trailing-slash"),
        pytest.param({"iss": "https://AUTH.example.com"}, id="iss-other-case"),
        pytest.param({"iss": DROP}, id="no-iss"),
        pytest.param({"aud": "other-api"}, id="wrong-aud"),
        pytest.param({"aud": ["other-api", "todo"]}, id="aud-list-without-ours"),
        pytest.param({"aud": DROP}, id="no-aud"),
    ],
)
def test_case_13_wrong_or_missing_issuer_or_audience_is_401_invalid(
    api: Api, db: Session, changes: dict[str, Any]
) -> None:
    assert_refused_everywhere(api, db, api.token(**changes))


@pytest.mark.parametrize(
    "typ",
    [
        pytest.param("JWS", id="JWS"),
        pytest.param("JOSE", id="JOSE"),
        pytest.param("JOSE+JSON", id="JOSE+JSON"),
        pytest.param("dpop+jwt", id="dpop+jwt"),
        pytest.param("secevent+jwt", id="secevent+jwt"),
        pytest.param("", id="empty"),
        pytest.param(1, id="number"),
        pytest.param(["JWT"], id="list"),
    ],
)
def test_case_14_other_typ_is_401_invalid(api: Api, db: Session, typ: object) -> None:
    assert_refused_everywhere(api, db, api.token({"typ": typ}))


@pytest.mark.parametrize("typ", [pytest.param(DROP, id="absent"), "JWT", "at+jwt"])
def test_case_14_jwt_typ_is_accepted(api: Api, typ: object) -> None:
    token = api.token({"typ": typ})

    assert refused_operations(api.client, api.subject, bearer(token)) == {}
