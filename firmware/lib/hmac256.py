# HMAC-SHA256 (RFC 2104) over hashlib.sha256: MicroPython has no `hmac` module.
# Used to check an OTA manifest's signature (docs/ota.md) against the fleet key.
import hashlib
import binascii

_B = 64  # SHA-256 block size


def _pad(key, byte):
    return bytes(b ^ byte for b in key)


def digest(key, msg):
    if len(key) > _B:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (_B - len(key))
    inner = hashlib.sha256(_pad(key, 0x36))
    inner.update(msg)
    outer = hashlib.sha256(_pad(key, 0x5C))
    outer.update(inner.digest())
    return outer.digest()


def hexdigest(key, msg):
    return binascii.hexlify(digest(key, msg)).decode()


def equal(a, b):
    # Compare without stopping at the first difference (no timing hint to an attacker).
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= ord(a[i]) ^ ord(b[i]) if isinstance(a, str) else a[i] ^ b[i]
    return r == 0


def verify(key, msg, sig_hex):
    # sig_hex: lowercase hex text (str or bytes), surrounding whitespace ignored.
    if isinstance(sig_hex, bytes):
        sig_hex = sig_hex.decode()
    return equal(hexdigest(key, msg), sig_hex.strip().lower())
