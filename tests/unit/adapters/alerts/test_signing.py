"""Standard Webhooks signing and verification: the spec's vector, rotation, tampering, replay."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.alerts.signing import (
    ReplayError,
    SignatureError,
    WebhookVerifier,
    new_message_id,
    parse_secret,
    sign,
    signature_headers,
)
from engine.errors import BurnrateError

# The known-answer vector published with the Standard Webhooks spec.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_C = bytes(range(200, 232))
NOW = 1_700_000_000.0
BODY = b'{"version":"4","status":"firing"}'
MSG = "msg_2b6PzWyNw0kQH3uYVtF1aLcE"


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def headers_for(
    keys: list[bytes], msg_id: str = MSG, ts: int = int(NOW), body: bytes = BODY
) -> dict[str, str]:
    return signature_headers(keys, msg_id, ts, body)


# -- signing ------------------------------------------------------------------------------


def test_the_spec_known_answer_vector_is_reproduced() -> None:
    key = parse_secret(SPEC_SECRET)
    assert sign(key, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_the_spec_vector_verifies() -> None:
    verifier = WebhookVerifier([SPEC_SECRET])
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": SPEC_SIGNATURE,
    }
    verifier.verify(headers, SPEC_BODY, now_s=SPEC_TS + 1)


def test_signature_headers_carry_id_timestamp_and_one_signature_per_secret() -> None:
    headers = signature_headers([KEY_A, KEY_B], MSG, 1234, BODY)
    assert headers == {
        "webhook-id": MSG,
        "webhook-timestamp": "1234",
        "webhook-signature": f"{sign(KEY_A, MSG, 1234, BODY)} {sign(KEY_B, MSG, 1234, BODY)}",
    }


def test_signature_headers_need_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature_headers([], MSG, 1234, BODY)


def test_message_ids_are_prefixed_alphanumeric_and_unique() -> None:
    ids = {new_message_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"msg_[0-9A-Za-z]{24}", i) for i in ids)


# -- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(SPEC_SECRET, base64.b64decode(SPEC_SECRET[6:]), id="whsec-prefixed"),
        pytest.param(SPEC_SECRET[6:], base64.b64decode(SPEC_SECRET[6:]), id="plain-base64"),
        pytest.param(f"  {SPEC_SECRET}\n", base64.b64decode(SPEC_SECRET[6:]), id="padded-by-ws"),
        pytest.param(whsec(bytes(25)).rstrip("="), bytes(25), id="base64-padding-may-be-left-off"),
    ],
)
def test_secrets_are_accepted_in_their_usual_spellings(text: str, key: bytes) -> None:
    assert parse_secret(text) == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty", id="an-empty-secret-is-rejected"),
        pytest.param("whsec_", "empty", id="a-prefix-alone-is-rejected"),
        pytest.param("whsec_not*base64!!", "not valid base64", id="non-base64-is-rejected"),
        pytest.param("whsec_abcde", "not valid base64", id="impossible-length-is-rejected"),
        pytest.param(whsec(bytes(16)), "16 bytes.*at least 24", id="a-16-byte-key-is-too-short"),
        pytest.param(whsec(bytes(23)), "23 bytes.*at least 24", id="a-23-byte-key-is-too-short"),
    ],
)
def test_bad_secrets_are_rejected_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        parse_secret(text)


def test_signature_errors_belong_to_the_engine_error_tree() -> None:
    assert issubclass(SignatureError, BurnrateError)
    assert issubclass(ReplayError, SignatureError)


@pytest.mark.parametrize(
    ("secrets", "error", "message"),
    [
        pytest.param([], SignatureError, "at least one secret", id="no-secrets"),
        pytest.param(["whsec_%%%"], SignatureError, "base64", id="a-bad-whsec-string"),
        pytest.param([bytes(8)], SignatureError, "too short", id="short-raw-key-bytes"),
        pytest.param(SPEC_SECRET, TypeError, "sequence", id="a-bare-string-not-a-list"),
    ],
)
def test_a_verifier_refuses_unusable_secrets(
    secrets: list[str | bytes], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        WebhookVerifier(secrets)


def test_a_verifier_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="tolerance_s"):
        WebhookVerifier([KEY_A], tolerance_s=0)
    with pytest.raises(ValueError, match="remember_ids"):
        WebhookVerifier([KEY_A], remember_ids=-1)


# -- verification: table ------------------------------------------------------------------

Case = Callable[[], tuple[dict[str, str], bytes]]


def _replace(headers: dict[str, str], **changes: str) -> dict[str, str]:
    out = dict(headers)
    for name, value in changes.items():
        out[name.replace("_", "-")] = value
    return out


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


ACCEPTED: list[tuple[str, Case]] = [
    ("a request signed with the secret is accepted", lambda: (headers_for([KEY_A]), BODY)),
    (
        "header names are matched whatever their case",
        lambda: ({k.upper(): v for k, v in headers_for([KEY_A]).items()}, BODY),
    ),
    (
        "a sender rotating keys may send several signatures and one matching is enough",
        lambda: (headers_for([KEY_C, KEY_A]), BODY),
    ),
    (
        "signatures of unknown versions next to a good v1 are ignored",
        lambda: (
            _replace(
                headers_for([KEY_A]),
                webhook_signature="v1a,AAAA " + headers_for([KEY_A])["webhook-signature"],
            ),
            BODY,
        ),
    ),
    (
        "extra whitespace between signatures is tolerated",
        lambda: (
            _replace(
                headers_for([KEY_C, KEY_A]),
                webhook_signature="  "
                + "   ".join(headers_for([KEY_C, KEY_A])["webhook-signature"].split())
                + " ",
            ),
            BODY,
        ),
    ),
    ("an empty body can be signed too", lambda: (headers_for([KEY_A], body=b""), b"")),
]

REJECTED: list[tuple[str, Case, str]] = [
    (
        "a body changed after signing is rejected",
        lambda: (headers_for([KEY_A]), BODY.replace(b"firing", b"resolved")),
        "no v1 signature",
    ),
    (
        "a body with one byte appended is rejected",
        lambda: (headers_for([KEY_A]), BODY + b" "),
        "no v1 signature",
    ),
    (
        "a timestamp changed after signing is rejected",
        lambda: (_replace(headers_for([KEY_A]), webhook_timestamp=str(int(NOW) + 1)), BODY),
        "no v1 signature",
    ),
    (
        "a message id changed after signing is rejected",
        lambda: (_replace(headers_for([KEY_A]), webhook_id="msg_other"), BODY),
        "no v1 signature",
    ),
    (
        "a signature made with a secret the receiver does not hold is rejected",
        lambda: (headers_for([KEY_C]), BODY),
        "no v1 signature",
    ),
    (
        "a signature without a version prefix is rejected",
        lambda: (
            _replace(
                headers_for([KEY_A]),
                webhook_signature=headers_for([KEY_A])["webhook-signature"][3:],
            ),
            BODY,
        ),
        "no v1 signature",
    ),
    (
        "a good digest under another version is rejected",
        lambda: (
            _replace(
                headers_for([KEY_A]),
                webhook_signature="v2" + headers_for([KEY_A])["webhook-signature"][2:],
            ),
            BODY,
        ),
        "no v1 signature",
    ),
    (
        "non-ascii garbage in the signature header is rejected, not a crash",
        lambda: (_replace(headers_for([KEY_A]), webhook_signature="v1,\u00fc\u00e9"), BODY),
        "no v1 signature",
    ),
    (
        "a request without webhook-id is rejected",
        lambda: (_without(headers_for([KEY_A]), "webhook-id"), BODY),
        "missing webhook-id header",
    ),
    (
        "a request without webhook-timestamp is rejected",
        lambda: (_without(headers_for([KEY_A]), "webhook-timestamp"), BODY),
        "missing webhook-timestamp header",
    ),
    (
        "a request without webhook-signature is rejected",
        lambda: (_without(headers_for([KEY_A]), "webhook-signature"), BODY),
        "missing webhook-signature header",
    ),
    (
        "an empty webhook-signature is rejected as missing",
        lambda: (_replace(headers_for([KEY_A]), webhook_signature="  "), BODY),
        "missing webhook-signature header",
    ),
    (
        "a timestamp in milliseconds or with a fraction is rejected",
        lambda: (_replace(headers_for([KEY_A]), webhook_timestamp=f"{NOW:.3f}"), BODY),
        "not integer Unix seconds",
    ),
    (
        "a negative timestamp is rejected",
        lambda: (_replace(headers_for([KEY_A]), webhook_timestamp="-5"), BODY),
        "not integer Unix seconds",
    ),
    (
        "an absurdly long timestamp is rejected without parsing it",
        lambda: (_replace(headers_for([KEY_A]), webhook_timestamp="9" * 5000), BODY),
        "not integer Unix seconds",
    ),
    (
        "a request signed ten minutes ago is rejected as too old",
        lambda: (headers_for([KEY_A], ts=int(NOW) - 600), BODY),
        "too old: 600s",
    ),
    (
        "a request signed ten minutes in the future is rejected as too new",
        lambda: (headers_for([KEY_A], ts=int(NOW) + 600), BODY),
        "too new: 600s",
    ),
]


@pytest.mark.parametrize("case", [c for _, c in ACCEPTED], ids=[i for i, _ in ACCEPTED])
def test_authentic_requests_are_accepted(case: Case) -> None:
    headers, body = case()
    WebhookVerifier([KEY_A]).verify(headers, body, now_s=NOW)


@pytest.mark.parametrize(
    ("case", "message"), [(c, m) for _, c, m in REJECTED], ids=[i for i, _, _ in REJECTED]
)
def test_inauthentic_or_stale_requests_are_rejected(case: Case, message: str) -> None:
    headers, body = case()
    with pytest.raises(SignatureError, match=message):
        WebhookVerifier([KEY_A]).verify(headers, body, now_s=NOW)


# -- verification: rotation, tolerance, replay ---------------------------------------------


@pytest.mark.parametrize(
    "signing_key", [KEY_A, KEY_B], ids=["signed-with-the-old-secret", "signed-with-the-new-secret"]
)
def test_a_receiver_holding_old_and_new_secrets_accepts_either(signing_key: bytes) -> None:
    verifier = WebhookVerifier([whsec(KEY_A), KEY_B])
    verifier.verify(headers_for([signing_key]), BODY, now_s=NOW)


@pytest.mark.parametrize(
    ("skew_s", "accepted"),
    [
        pytest.param(-300, True, id="exactly-the-tolerance-in-the-past-is-accepted"),
        pytest.param(-301, False, id="one-second-beyond-in-the-past-is-rejected"),
        pytest.param(300, True, id="exactly-the-tolerance-in-the-future-is-accepted"),
        pytest.param(301, False, id="one-second-beyond-in-the-future-is-rejected"),
        pytest.param(0, True, id="signed-just-now-is-accepted"),
    ],
)
def test_the_timestamp_tolerance_applies_in_both_directions(skew_s: int, accepted: bool) -> None:
    verifier = WebhookVerifier([KEY_A])
    headers = headers_for([KEY_A], ts=int(NOW) + skew_s)
    if accepted:
        verifier.verify(headers, BODY, now_s=NOW)
    else:
        with pytest.raises(SignatureError, match=r"too (old|new)"):
            verifier.verify(headers, BODY, now_s=NOW)


def test_a_custom_tolerance_is_honoured() -> None:
    verifier = WebhookVerifier([KEY_A], tolerance_s=30)
    with pytest.raises(SignatureError, match=r"too old: 31s before now \(tolerance 30s\)"):
        verifier.verify(headers_for([KEY_A], ts=int(NOW) - 31), BODY, now_s=NOW)


def test_a_replayed_message_is_rejected_as_a_replay() -> None:
    verifier = WebhookVerifier([KEY_A])
    headers = headers_for([KEY_A])
    verifier.verify(headers, BODY, now_s=NOW)
    with pytest.raises(ReplayError, match="already accepted") as caught:
        verifier.verify(headers, BODY, now_s=NOW + 1)
    assert caught.value.msg_id == MSG


def test_a_retry_re_signed_later_with_the_same_id_is_still_a_replay() -> None:
    verifier = WebhookVerifier([KEY_A])
    verifier.verify(headers_for([KEY_A]), BODY, now_s=NOW)
    with pytest.raises(ReplayError):
        verifier.verify(headers_for([KEY_A], ts=int(NOW) + 30), BODY, now_s=NOW + 30)


def test_a_failed_verification_does_not_burn_the_id() -> None:
    verifier = WebhookVerifier([KEY_A])
    with pytest.raises(SignatureError):
        verifier.verify(headers_for([KEY_A]), BODY + b"x", now_s=NOW)
    verifier.verify(headers_for([KEY_A]), BODY, now_s=NOW)


def test_a_forgotten_id_is_accepted_again() -> None:
    verifier = WebhookVerifier([KEY_A])
    verifier.verify(headers_for([KEY_A]), BODY, now_s=NOW)
    verifier.forget(MSG)
    verifier.forget("msg_never_seen")
    verifier.verify(headers_for([KEY_A]), BODY, now_s=NOW)


def test_remembered_ids_are_bounded_and_the_oldest_is_forgotten_first() -> None:
    verifier = WebhookVerifier([KEY_A], remember_ids=2)
    for msg_id in ("msg_1", "msg_2", "msg_3"):
        verifier.verify(headers_for([KEY_A], msg_id=msg_id), BODY, now_s=NOW)
    verifier.verify(headers_for([KEY_A], msg_id="msg_1"), BODY, now_s=NOW)  # evicted
    with pytest.raises(ReplayError):
        verifier.verify(headers_for([KEY_A], msg_id="msg_3"), BODY, now_s=NOW)


def test_remember_ids_zero_turns_the_replay_check_off() -> None:
    verifier = WebhookVerifier([KEY_A], remember_ids=0)
    verifier.verify(headers_for([KEY_A]), BODY, now_s=NOW)
    verifier.verify(headers_for([KEY_A]), BODY, now_s=NOW)


# -- properties ---------------------------------------------------------------------------

keys = st.binary(min_size=24, max_size=64)
bodies = st.binary(max_size=2048)
ids = st.from_regex(r"msg_[0-9A-Za-z]{1,32}", fullmatch=True)


@given(key=keys, msg_id=ids, body=bodies, ts=st.integers(0, 2**40))
def test_what_is_signed_verifies(key: bytes, msg_id: str, body: bytes, ts: int) -> None:
    headers = signature_headers([key], msg_id, ts, body)
    WebhookVerifier([key]).verify(headers, body, now_s=ts)


@given(
    key=keys,
    body=st.binary(min_size=1, max_size=2048),
    data=st.data(),
)
def test_changing_any_single_byte_of_the_body_fails(
    key: bytes, body: bytes, data: st.DataObject
) -> None:
    headers = signature_headers([key], MSG, int(NOW), body)
    index = data.draw(st.integers(0, len(body) - 1), label="index")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]), label="byte")
    tampered = body[:index] + bytes([new]) + body[index + 1 :]
    with pytest.raises(SignatureError, match="no v1 signature"):
        WebhookVerifier([key]).verify(headers, tampered, now_s=NOW)
