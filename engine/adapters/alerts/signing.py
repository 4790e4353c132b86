"""Standard Webhooks signatures: sign what Burnrate sends, verify it where it lands.

A signed request carries three headers:

- `webhook-id`: the message id, the same on every retry of one message (receivers use it
  to drop duplicates);
- `webhook-timestamp`: integer Unix seconds when this attempt was signed;
- `webhook-signature`: space-separated `v1,<base64>` entries, where each base64 value is
  HMAC-SHA256 over `"{id}.{timestamp}.{body}"` with one secret. Several entries let a
  receiver rotate secrets: it accepts the message if any entry matches any of its keys.

Secrets are written `whsec_<base64>` and hold at least 24 bytes of key. Everything here
is pure (stdlib only, no I/O); the sender lives with the webhook sink.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from secrets import token_bytes

from engine.errors import BurnrateError

__all__ = [
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "ReplayError",
    "SignatureError",
    "WebhookVerifier",
    "message_id_from",
    "new_message_id",
    "parse_secret",
    "sign",
    "signature_headers",
]

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
_VERSION = "v1"
_ID = "webhook-id"
_TIMESTAMP = "webhook-timestamp"
_SIGNATURE = "webhook-signature"
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class SignatureError(BurnrateError):
    """A webhook signature, its headers, or a signing secret is not acceptable."""


class ReplayError(SignatureError):
    """The signature is valid but this message id was accepted before.

    Senders re-use the id on every retry, so a receiver that already processed the
    message may answer 2xx to stop the retries. `msg_id` is the repeated id.
    """

    def __init__(self, msg_id: str) -> None:
        self.msg_id = msg_id
        super().__init__(f"message id {msg_id!r} was already accepted (replay or retry)")


def parse_secret(text: str) -> bytes:
    """The key in a `whsec_<base64>` secret (the prefix is optional).

    Raises SignatureError if the text is not base64 or the key is shorter than 24 bytes.
    """
    body = text.strip()
    if body.startswith(SECRET_PREFIX):
        body = body[len(SECRET_PREFIX) :]
    if not body:
        raise SignatureError("webhook secret is empty (expected whsec_<base64>)")
    padded = body + "=" * (-len(body) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(
            "webhook secret is not valid base64 (expected whsec_<base64>, "
            "e.g. generated with `openssl rand -base64 32`)"
        ) from None
    _check_key(key)
    return key


def _check_key(key: bytes) -> None:
    if len(key) < MIN_SECRET_BYTES:
        raise SignatureError(
            f"webhook secret is too short: {len(key)} bytes of key, "
            f"at least {MIN_SECRET_BYTES} are required"
        )


def new_message_id() -> str:
    """A fresh random message id, `msg_` and 24 alphanumerics (about 143 bits)."""
    return message_id_from(token_bytes(18))


def message_id_from(seed: bytes) -> str:
    """A message id made from `seed` (e.g. a digest of what the message is about), so
    the same seed always gives the same id: `msg_` and 24 alphanumerics."""
    raw = int.from_bytes(seed[:18], "big")
    chars = []
    for _ in range(24):
        raw, digit = divmod(raw, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[digit])
    return "msg_" + "".join(chars)


def _digest(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(secret, signed, hashlib.sha256).digest()


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature entry, `v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`."""
    return f"{_VERSION}," + base64.b64encode(_digest(secret, msg_id, timestamp, body)).decode()


def signature_headers(
    secrets: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, with one signature per secret (for rotation)."""
    if not secrets:
        raise ValueError("signature_headers needs at least one secret")
    return {
        _ID: msg_id,
        _TIMESTAMP: str(timestamp),
        _SIGNATURE: " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }


class WebhookVerifier:
    """Checks Standard Webhooks signatures on requests Burnrate sends to your receiver.

    `secrets` are `whsec_...` strings (or raw key bytes); a message is accepted when any of
    its signatures matches any secret, so during a rotation list both the old and the new
    secret. `verify` rejects, with a SignatureError saying why: a missing header, a
    timestamp more than `tolerance_s` seconds from `now_s` (either way), no matching
    signature, and a message id accepted before (ReplayError, a SignatureError). Ids are
    remembered only after a successful check, at most `remember_ids` of them (the oldest
    are forgotten first; 0 disables the replay check). Header names are case-insensitive
    and signatures are compared in constant time. Not safe to share between threads
    without a lock; one per event loop is the intended use.

    Usage in an aiohttp receiver::

        verifier = WebhookVerifier([os.environ["BURNRATE_WEBHOOK_SECRET"]])

        async def alerts(request: web.Request) -> web.Response:
            body = await request.read()
            try:
                verifier.verify(request.headers, body, now_s=time.time())
            except ReplayError:
                return web.Response(status=200)  # a retry of a message already handled
            except SignatureError as exc:
                return web.Response(status=401, text=str(exc))
            try:
                await handle(json.loads(body))
            except Exception:
                verifier.forget(request.headers["webhook-id"])  # let the retry through
                raise
            return web.Response(status=204)
    """

    def __init__(
        self,
        secrets: Sequence[str | bytes],
        *,
        tolerance_s: float = 300,
        remember_ids: int = 10_000,
    ) -> None:
        if isinstance(secrets, str | bytes):
            raise TypeError("secrets must be a sequence of secrets, not a single secret")
        if not secrets:
            raise SignatureError("WebhookVerifier needs at least one secret")
        if tolerance_s <= 0:
            raise ValueError(f"tolerance_s must be > 0, got {tolerance_s}")
        if remember_ids < 0:
            raise ValueError(f"remember_ids must be >= 0, got {remember_ids}")
        keys: list[bytes] = []
        for secret in secrets:
            if isinstance(secret, str):
                keys.append(parse_secret(secret))
            else:
                key = bytes(secret)
                _check_key(key)
                keys.append(key)
        self._keys = tuple(keys)
        self.tolerance_s = tolerance_s
        self.remember_ids = remember_ids
        self._seen: OrderedDict[str, None] = OrderedDict()

    def verify(self, headers: Mapping[str, str], body: bytes, now_s: float) -> None:
        """Return if the request is authentic, fresh and new; raise SignatureError if not."""
        lowered = {name.lower(): value for name, value in headers.items()}
        msg_id = _header(lowered, _ID)
        timestamp_text = _header(lowered, _TIMESTAMP)
        signature_text = _header(lowered, _SIGNATURE)

        stripped = timestamp_text.strip()
        if not (stripped.isascii() and stripped.isdigit() and len(stripped) <= 15):
            raise SignatureError(
                f"{_TIMESTAMP} header is not integer Unix seconds: {timestamp_text[:32]!r}"
            )
        timestamp = int(stripped)
        skew = now_s - timestamp
        if skew > self.tolerance_s:
            raise SignatureError(
                f"{_TIMESTAMP} is too old: {skew:.0f}s before now (tolerance {self.tolerance_s:g}s)"
            )
        if -skew > self.tolerance_s:
            raise SignatureError(
                f"{_TIMESTAMP} is too new: {-skew:.0f}s after now (tolerance {self.tolerance_s:g}s)"
            )

        expected = [base64.b64encode(_digest(key, msg_id, timestamp, body)) for key in self._keys]
        matched = False
        for entry in signature_text.split():
            version, sep, value = entry.partition(",")
            if not sep or version != _VERSION:
                continue
            candidate = value.encode("utf-8", "replace")
            for want in expected:
                matched |= hmac.compare_digest(want, candidate)
        if not matched:
            raise SignatureError(
                f"no {_VERSION} signature in {_SIGNATURE} matches any configured secret "
                "(wrong secret, or the id, timestamp or body was altered)"
            )

        if self.remember_ids == 0:
            return
        if msg_id in self._seen:
            raise ReplayError(msg_id)
        self._seen[msg_id] = None
        while len(self._seen) > self.remember_ids:
            self._seen.popitem(last=False)

    def forget(self, msg_id: str) -> None:
        """Drop `msg_id` from the ids seen, so a retry of it is accepted again."""
        self._seen.pop(msg_id, None)


def _header(lowered: Mapping[str, str], name: str) -> str:
    value = lowered.get(name)
    if value is None or not value.strip():
        raise SignatureError(f"missing {name} header")
    return value
