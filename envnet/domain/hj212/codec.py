"""HJ 212-2017 packet codec.

Packet: `##` + 4-digit decimal length of the data segment + data segment + CRC16 as 4
upper-case hex digits + `\\r\\n`. Data segment: `QN=..;ST=..;CN=..;PW=..;MN=..;Flag=..;CP=&&..&&`.

CRC16 (HJ 212-2017 annex A, over the data segment bytes only): register starts at 0xFFFF; per
byte crc = (crc >> 8) ^ byte, then 8 times: shift right one bit and XOR 0xA001 when the bit
shifted out was 1. Written most significant nibble first. This is NOT Modbus CRC-16 (which
XORs the byte into the low half): the standard's own example
`QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&`
gives 1C80 with this algorithm and 0759 with Modbus; public implementations agree on 1C80.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

MAX_SEGMENT = 9999  # the length field has four decimal digits
HEADER = b"##"
TRAILER = b"\r\n"
OVERHEAD = len(HEADER) + 4 + 4 + len(TRAILER)
MAX_PACKET = MAX_SEGMENT + OVERHEAD

# Flag bits (HJ 212-2017 6.3.2): V5..V0 protocol version (000001 = 2017), D sub-packets, A ack.
FLAG_ACK = 0x01
FLAG_SPLIT = 0x02
FLAG_V2017 = 0x04

_QN_RE = re.compile(r"^\d{17}$")
_HEAD_KEYS = ("QN", "PNUM", "PNO", "ST", "CN", "PW", "MN", "Flag")


class DecodeError(ValueError):
    """A packet that is not valid HJ 212; str() says what is wrong."""


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def qn(t: datetime) -> str:
    """QN request number yyyyMMddHHmmssZZZ (milliseconds) from a local (CST) time."""
    return t.strftime("%Y%m%d%H%M%S") + f"{t.microsecond // 1000:03d}"


def data_time(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S")


@dataclass(slots=True)
class Packet:
    cn: str
    st: str = "91"  # 91: system interaction (acks)
    pw: str = ""
    mn: str = ""
    flag: int = FLAG_V2017
    qn: str = ""
    cp: dict[str, str] = field(default_factory=dict)

    @property
    def needs_ack(self) -> bool:
        return bool(self.flag & FLAG_ACK)

    def segment(self) -> str:
        head = []
        if self.qn:
            head.append(f"QN={self.qn}")
        head += [f"ST={self.st}", f"CN={self.cn}", f"PW={self.pw}", f"MN={self.mn}"]
        head.append(f"Flag={self.flag}")
        return ";".join(head) + ";CP=&&" + encode_cp(self.cp) + "&&"

    def encode(self) -> bytes:
        seg = self.segment().encode("ascii")
        if len(seg) > MAX_SEGMENT:
            raise ValueError(f"data segment of {len(seg)} bytes exceeds {MAX_SEGMENT}")
        return b"%s%04d%s%04X%s" % (HEADER, len(seg), seg, crc16(seg), TRAILER)


def encode_cp(cp: dict[str, str]) -> str:
    """Fields of one pollutant (a34004-Avg, a34004-Flag) are joined by ',', groups by ';'."""
    groups: list[list[str]] = []
    last = None
    for key, value in cp.items():
        for bad in ";,=&":
            if bad in key or bad in str(value):
                raise ValueError(f"CP field {key}={value!r} contains {bad!r}")
        prefix = key.split("-", 1)[0] if "-" in key else None
        if prefix is not None and prefix == last:
            groups[-1].append(f"{key}={value}")
        else:
            groups.append([f"{key}={value}"])
        last = prefix
    return ";".join(",".join(g) for g in groups)


def decode(frame: bytes) -> Packet:
    """Parse one packet (with or without the trailing CRLF); raise DecodeError when invalid."""
    if not frame:
        raise DecodeError("empty packet")
    if len(frame) > MAX_PACKET:
        raise DecodeError(f"packet of {len(frame)} bytes exceeds the maximum of {MAX_PACKET}")
    if not frame.startswith(HEADER):
        raise DecodeError(f"packet does not start with '##' (got {frame[:8]!r})")
    body = frame[:-2] if frame.endswith(TRAILER) else frame
    if not frame.endswith(TRAILER):
        raise DecodeError("packet does not end with CRLF (truncated?)")
    length_txt = body[2:6]
    if len(length_txt) < 4 or not length_txt.isdigit():
        raise DecodeError(f"length field is not 4 decimal digits (got {length_txt!r})")
    length = int(length_txt)
    seg, crc_txt = body[6:-4], body[-4:]
    if len(seg) != length:
        what = "truncated" if len(seg) < length else "longer than declared"
        raise DecodeError(f"data segment is {len(seg)} bytes, length field says {length} ({what})")
    if not re.fullmatch(rb"[0-9A-Fa-f]{4}", crc_txt):
        raise DecodeError(f"CRC field is not 4 hex digits (got {crc_txt!r})")
    want = crc16(seg)
    if int(crc_txt, 16) != want:
        raise DecodeError(f"CRC mismatch: packet says {crc_txt.decode()}, data gives {want:04X}")
    try:
        text = seg.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("data segment is not ASCII") from None
    return parse_segment(text)


def parse_segment(text: str) -> Packet:
    head, sep, cp = text.partition("CP=&&")
    if not sep or not cp.endswith("&&"):
        raise DecodeError("data segment has no CP=&&...&& part")
    fields: dict[str, str] = {}
    for item in head.rstrip(";").split(";"):
        k, eq, v = item.partition("=")
        if not eq or k not in _HEAD_KEYS:
            raise DecodeError(f"unexpected field {item!r} in the data segment")
        fields[k] = v
    if "CN" not in fields:
        raise DecodeError("data segment has no CN")
    if "QN" in fields and not _QN_RE.match(fields["QN"]):
        raise DecodeError(f"QN {fields['QN']!r} is not yyyyMMddHHmmssZZZ")
    try:
        flag = int(fields.get("Flag", "4"))
    except ValueError:
        raise DecodeError(f"Flag {fields['Flag']!r} is not a number") from None
    return Packet(
        cn=fields["CN"],
        st=fields.get("ST", ""),
        pw=fields.get("PW", ""),
        mn=fields.get("MN", ""),
        flag=flag,
        qn=fields.get("QN", ""),
        cp=parse_cp(cp[:-2]),
    )


def parse_cp(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not text:
        return out
    for item in re.split(r"[;,]", text):
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise DecodeError(f"CP item {item!r} is not key=value")
        out[k] = v
    return out


class FrameReader:
    """Splits a TCP byte stream into packets; garbage before '##' is skipped and reported."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[Packet | DecodeError]:
        self.buf += data
        out: list[Packet | DecodeError] = []
        while True:
            start = self.buf.find(HEADER)
            if start < 0:
                if len(self.buf) > 1:
                    out.append(DecodeError(f"garbage skipped: {self.buf[:32]!r}"))
                    self.buf = self.buf[-1:] if self.buf.endswith(b"#") else b""
                return out
            if start > 0:
                out.append(DecodeError(f"garbage skipped: {self.buf[: min(start, 32)]!r}"))
                self.buf = self.buf[start:]
            end = self.buf.find(TRAILER)
            if end < 0:
                if len(self.buf) > MAX_PACKET:
                    out.append(DecodeError("no CRLF within the maximum packet size"))
                    self.buf = b""
                return out
            frame, self.buf = self.buf[: end + 2], self.buf[end + 2 :]
            try:
                out.append(decode(frame))
            except DecodeError as e:
                out.append(e)
