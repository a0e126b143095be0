# Checksums of the sensor protocols, bit by bit (no 256-byte tables in RAM; frames
# are at most a few dozen bytes, so speed does not matter).


def crc8_sensirion(buf, start=0, end=None):
    # Sensirion SHT3x/SHT4x: poly 0x31 (x^8+x^5+x^4+1), init 0xFF, MSB first, no
    # final XOR. Datasheet vector: 0xBE 0xEF -> 0x92.
    if end is None:
        end = len(buf)
    crc = 0xFF
    for i in range(start, end):
        crc ^= buf[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc8_dallas(buf, start=0, end=None):
    # Maxim/Dallas 1-Wire: poly 0x31 reflected (0x8C), init 0, LSB first.
    # Maxim AN27 vector: ROM 02 1C B8 01 00 00 00 -> 0xA2.
    if end is None:
        end = len(buf)
    crc = 0
    for i in range(start, end):
        b = buf[i]
        for _ in range(8):
            mix = (crc ^ b) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            b >>= 1
    return crc


def crc16_modbus(buf, start=0, end=None):
    # Modbus RTU: poly 0xA001 (0x8005 reflected), init 0xFFFF; sent low byte first.
    # Vector: 01 03 00 00 00 01 -> 0x0A84 (on the wire 84 0A).
    if end is None:
        end = len(buf)
    crc = 0xFFFF
    for i in range(start, end):
        crc ^= buf[i]
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def sum16(buf, start, end):
    # Plantower: plain 16-bit sum of the bytes.
    s = 0
    for i in range(start, end):
        s += buf[i]
    return s & 0xFFFF


def winsen_sum(buf):
    # Winsen ZE/MH-Z: two's complement of the sum of bytes 1..7 of a 9-byte frame.
    s = 0
    for i in range(1, 8):
        s += buf[i]
    return (~s + 1) & 0xFF
