"""HJ 212-2017 codec: encoder checked against a second, table-driven CRC written here from the
standard's description, and decoder robustness."""

from __future__ import annotations

import pytest

from envnet.domain.hj212 import codes
from envnet.domain.hj212.codec import DecodeError, FrameReader, Packet, decode, parse_segment


def _table() -> list[int]:
    # CRC-16 reflected polynomial 0xA001, one table entry per byte value.
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        out.append(c)
    return out


TABLE = _table()


def ref_crc(data: bytes) -> int:
    """HJ 212-2017 annex A: reg=0xFFFF; reg = (reg >> 8) ^ byte; 8 x (shift, XOR 0xA001 on a
    carried 1). The 8 shifts of the low byte equal a table lookup on it."""
    reg = 0xFFFF
    for b in data:
        reg = (reg >> 8) ^ b
        reg = (reg >> 8) ^ TABLE[reg & 0xFF]
    return reg


def ref_packet(segment: str) -> bytes:
    seg = segment.encode()
    return b"##%04d%s%04X\r\n" % (len(seg), seg, ref_crc(seg))


STD_EXAMPLE_SEG = (
    "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    "CP=&&RtdInterval=30&&"
)


def test_standard_example_crc_is_1c80():
    # The example packet printed in HJ 212-2017 itself.
    assert ref_crc(STD_EXAMPLE_SEG.encode()) == 0x1C80
    pkt = Packet(
        cn="1062", st="32", pw="100000", mn="010000A8900016F000169DC0", flag=5,
        qn="20160801085857223", cp={"RtdInterval": "30"},
    )  # fmt: skip
    assert pkt.encode() == b"##0101" + STD_EXAMPLE_SEG.encode() + b"1C80\r\n"


def test_hour_packet_encodes_like_reference():
    cp = {
        "DataTime": "20261123100000",
        "a34004-Avg": "35.5", "a34004-Min": "30", "a34004-Max": "41.2", "a34004-Flag": "N",
        "a21026-Avg": "8", "a21026-Min": "8", "a21026-Max": "8", "a21026-Flag": "C",
    }  # fmt: skip
    pkt = Packet(
        cn="2061", st="22", pw="123456", mn="MN0001", flag=5, qn="20261123110001123", cp=cp
    )
    seg = (
        "QN=20261123110001123;ST=22;CN=2061;PW=123456;MN=MN0001;Flag=5;CP=&&DataTime=20261123100000;"
        "a34004-Avg=35.5,a34004-Min=30,a34004-Max=41.2,a34004-Flag=N;"
        "a21026-Avg=8,a21026-Min=8,a21026-Max=8,a21026-Flag=C&&"
    )
    assert pkt.encode() == ref_packet(seg)
    back = decode(pkt.encode())
    assert back.cn == "2061" and back.mn == "MN0001" and back.needs_ack and back.cp == cp


@pytest.mark.parametrize("cn", ["2011", "2051", "2031", "9014"])
def test_roundtrip_many(cn):
    pkt = Packet(cn=cn, st="21", pw="p", mn="M", qn="20260101000000000", cp={"w01001-Rtd": "7.1"})
    raw = pkt.encode()
    assert raw == ref_packet(pkt.segment())
    assert decode(raw) == pkt


def test_codes_cover_the_standard_list():
    assert codes.code_for("air", "pm25") == "a34004"
    assert codes.code_for("air", "o3") == "a05024"
    assert codes.code_for("water", "nh3n") == "w21003"
    assert codes.code_for("air", "voc") is None
    assert [codes.hj_flag(f) for f in (None, "warmup", "fault", "cal", "maint", "range")] == [
        "N", "D", "D", "C", "M", "T",
    ]  # fmt: skip


GOOD = ref_packet(STD_EXAMPLE_SEG)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "empty packet"),
        (GOOD[:50], "does not end with CRLF"),
        (GOOD[:6] + GOOD[10:], "length field says 101 (truncated)"),
        (b"##0090" + GOOD[6:], "longer than declared"),
        (GOOD.replace(b"1C80", b"1C81"), "CRC mismatch: packet says 1C81, data gives 1C80"),
        (GOOD.replace(b"1C80", b"ZZZZ"), "CRC field is not 4 hex digits"),
        (b"hello world\r\n", "does not start with '##'"),
        (b"##ab12QN=1\r\n", "length field is not 4 decimal digits"),
        (b"##" + b"9" * 20000 + b"\r\n", "exceeds the maximum"),
    ],
)
def test_decoder_rejects_clearly(raw, message):
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(raw)


def test_bad_segment_fields():
    with pytest.raises(DecodeError, match="no CP"):
        decode(ref_packet("QN=20260101000000000;CN=2011"))
    with pytest.raises(DecodeError, match="QN"):
        parse_segment("QN=123;CN=2011;CP=&&&&")
    with pytest.raises(DecodeError, match="unexpected field"):
        parse_segment("XX=1;CN=2011;CP=&&&&")
    with pytest.raises(DecodeError, match="not key=value"):
        parse_segment("CN=2011;CP=&&a34004-Rtd&&")


def test_encoder_refuses_oversized_and_separators():
    with pytest.raises(ValueError, match="exceeds 9999"):
        Packet(cn="2011", cp={f"k{i}": "1" * 10 for i in range(1000)}).encode()
    with pytest.raises(ValueError, match="contains"):
        Packet(cn="2011", cp={"a": "1;2"}).encode()


def test_frame_reader_splits_stream_and_skips_garbage():
    r = FrameReader()
    out = r.feed(b"noise" + GOOD[:30])
    assert len(out) == 1 and isinstance(out[0], DecodeError) and "garbage" in str(out[0])
    out = r.feed(GOOD[30:] + GOOD.replace(b"1C80", b"0000") + GOOD)
    assert [type(x).__name__ for x in out] == ["Packet", "DecodeError", "Packet"]
    assert out[0].cp == {"RtdInterval": "30"}
