# HMAC-SHA256 (RFC 2104) over hashlib.sha256: MicroPython has no `hmac` module.
# Used to check an OTA manifest's signature (docs/ota.md) against the fleet key.
import hashlib
import binascii
from micropython import const

_B = const(64)  # SHA-256 block size


def _pad(key, byte):
    return bytes(b ^ byte for b in key)


class HMAC:
    # Incremental: update() with each chunk as it arrives, so that a signed file (the OTA
    # manifest) is checked while it streams to flash, never held whole in RAM.
    def __init__(self, key):
        if len(key) > _B:
            key = hashlib.sha256(key).digest()
        key = key + b"\x00" * (_B - len(key))
        self._inner = hashlib.sha256(_pad(key, 0x36))
        self._okey = _pad(key, 0x5C)

    def update(self, msg):
        self._inner.update(msg)

    def digest(self):
        outer = hashlib.sha256(self._okey)
        outer.update(self._inner.digest())
        return outer.digest()

    def hexdigest(self):
        return binascii.hexlify(self.digest()).decode()


def digest(key, msg):
    h = HMAC(key)
    h.update(msg)
    return h.digest()


def hexdigest(key, msg):
    return binascii.hexlify(digest(key, msg)).decode()


def equal(a, b):
    # Compare without stopping at the first difference (no timing hint to an attacker).
    # As bytes: indexing a str interns every character it yields, for good.
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0


def verify(key, msg, sig_hex):
    # sig_hex: lowercase hex text (str or bytes), surrounding whitespace ignored.
    return verify_hex(hexdigest(key, msg), sig_hex)


def verify_hex(hex_digest, sig_hex):
    # An HMAC's hexdigest() against a signature as verify() takes it.
    if isinstance(sig_hex, bytes):
        sig_hex = sig_hex.decode()
    return equal(hex_digest, sig_hex.strip().lower())
