"""Checksums of the sensor protocols on MicroPython, against published vectors and an
independent CPython implementation."""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from mpyhost import run_case  # noqa: E402


def ref_crc8(data, poly, init, reflect):
    crc = init
    for b in data:
        if reflect:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        else:
            crc ^= b
            for _ in range(8):
                crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def ref_crc16_modbus(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_published_vectors():
    r = run_case("""
        from checksum import *
        print(json.dumps({
            "sht": crc8_sensirion(b"\\xbe\\xef"),
            "dallas": crc8_dallas(bytes((0x02, 0x1C, 0xB8, 0x01, 0, 0, 0))),
            "modbus": crc16_modbus(bytes((1, 3, 0, 0, 0, 1))),
            "winsen": winsen_sum(bytes((0xFF, 0x01, 0x86, 0, 0, 0, 0, 0, 0))),
            "pms": sum16(bytes((0x42, 0x4D, 0xE2, 0, 0)), 0, 5),
        }))
    """)
    assert r["sht"] == 0x92  # Sensirion datasheet example: 0xBEEF -> 0x92
    assert r["dallas"] == 0xA2  # Maxim AN27 example ROM 02 1C B8 01 00 00 00 -> A2
    assert r["modbus"] == 0x0A84  # on the wire: 84 0A
    assert r["winsen"] == 0x79  # the read command FF 01 86 00 00 00 00 00 79
    assert r["pms"] == 0x0171  # 42 4D E2 00 00 01 71


def test_random_data_matches_cpython_reference():
    rng = random.Random(7)
    blobs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(40)]
    got = run_case("""
        from checksum import *
        print(json.dumps([[crc8_sensirion(b), crc8_dallas(b), crc16_modbus(b)] for b in BLOBS]))
    """, BLOBS=blobs)
    want = [[ref_crc8(b, 0x31, 0xFF, False), ref_crc8(b, 0x8C, 0, True), ref_crc16_modbus(b)]
            for b in blobs]
    assert got == want


def test_dallas_crc_of_rom_with_crc_is_zero():
    # A property of the Dallas CRC used to validate ROM codes and scratchpads.
    r = run_case("""
        from checksum import crc8_dallas
        print(json.dumps(crc8_dallas(bytes((0x02, 0x1C, 0xB8, 0x01, 0, 0, 0, 0xA2)))))
    """)
    assert r == 0
