"""Plantower PMS5003/7003 driver on MicroPython with a fake UART: datasheet frames
byte-exact, command frames, resync, and every failure the sampler must count."""

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from mpyhost import run_case  # noqa: E402


def frame(words):
    # Datasheet layout, built here independently: 42 4D, length 28, 13 words, sum.
    body = b"\x42\x4d" + struct.pack(">H13H", 28, *words)
    return body + struct.pack(">H", sum(body) & 0xFFFF)


WORDS = (11, 17, 24, 10, 15, 22, 1893, 560, 104, 12, 3, 1, 0x9100)
READ = bytes.fromhex("424de200000171")


def run_passive(replies):
    return run_case("""
        import uartdevs, pms
        dev = machine.attach("uart", 2, uartdevs.Replay(REPLIES))
        u = machine.UART(2, 9600)
        d = pms.PMS(u, mode="passive", timeout_ms=200)
        r = attempt(d.read)
        print(json.dumps({"r": r, "words": d.words, "written": [w.hex() for w in u.written]}))
    """, REPLIES=replies)


def test_datasheet_frame_parsed_byte_exact():
    f = frame(WORDS)
    assert len(f) == 32
    out = run_passive({READ: f})
    assert out["r"] == ["ok", {"pm25": 15.0, "pm10": 22.0}]  # atmospheric, not CF=1
    assert out["words"] == list(WORDS)
    # passive mode first (E1 00 00), then read requests (E2 00 00)
    assert out["written"] == ["424de100000170", "424de200000171"]


def test_bad_checksum_is_crc_error():
    f = bytearray(frame(WORDS))
    f[31] ^= 1
    out = run_passive({READ: bytes(f)})
    name, msg, is_oserror = out["r"]
    assert name == "CRCError" and is_oserror and "checksum" in msg


def test_short_read_and_timeout():
    out = run_passive({READ: frame(WORDS)[:20]})
    assert out["r"][0] == "SensorTimeout" and "short frame: 20 of 32" in out["r"][1]
    out = run_passive({})
    assert out["r"][0] == "SensorTimeout" and "no data" in out["r"][1]
    assert out["r"][2] is True  # an OSError: the sampler's except catches it


def test_garbage_false_headers_and_acks_before_frame():
    # noise, a lone 0x42, a false "42 4D" with an impossible length, a mode ack
    ack = bytes.fromhex("424d0004e1000174")
    junk = b"\x00\xff\x42\x13" + b"\x42\x4d\x99\x99" + ack
    out = run_passive({READ: junk + frame(WORDS)})
    assert out["r"] == ["ok", {"pm25": 15.0, "pm10": 22.0}]


def test_endless_garbage_gives_up_with_clear_error():
    out = run_passive({READ: bytes(range(200)) * 2})
    assert out["r"][0] == "SensorError" and "no frame header" in out["r"][1]


def test_frame_split_across_reads_and_big_values():
    words = (1000, 999, 998, 997, 996, 995, 65535, 0, 0, 0, 0, 0, 0)
    f = frame(words)
    out = run_case("""
        import uartdevs, pms
        class Slow:
            # a stream of frames dribbling in 5 bytes per 5 ms, as at 9600 baud; the
            # driver drains what is buffered and must resync mid-frame
            def __init__(self, data): self.data = data; self.t = fakeclock.ticks_ms()
            def on_write(self, uart, data): pass
            def poll(self, uart):
                while fakeclock.ticks_ms() - self.t >= 5 and self.data:
                    self.t += 5
                    uart.feed(self.data[:5]); self.data = self.data[5:]
        machine.attach("uart", 1, Slow(FRAME * 3))
        d = pms.PMS(machine.UART(1), mode="active")
        print(json.dumps([attempt(d.read), d.words]))
    """, FRAME=f)
    assert out[0] == ["ok", {"pm25": 996.0, "pm10": 995.0}]
    assert out[1] == list(words)


def test_active_mode_stream_and_all_fault_kinds():
    out = run_case("""
        import uartdevs, pms
        dev = machine.attach("uart", 2, uartdevs.PMS(pm25=35, pm10=50, mode="passive"))
        u = machine.UART(2, 9600)
        d = pms.PMS(u, mode="active")
        r = [attempt(d.read)]
        for fault in ("checksum", "garbage", "short", "silent", None):
            fakeclock.advance(500)  # next frame is due while the driver waits
            dev.fault = fault
            if fault == "silent":
                dev.period_ms = 10000  # the fan stopped: nothing for longer than the timeout
            r.append(attempt(d.read))
            dev.period_ms = 1000
        print(json.dumps({"r": r, "written": [w.hex() for w in u.written]}))
    """)
    r = [x[0] for x in out["r"]]
    # checksum: the bad frame is skipped, the next one (1 s later) is good -> ok;
    # short: torn frame + next frame -> resync -> ok; silent: nothing for 3 s.
    assert r == ["ok", "ok", "ok", "ok", "SensorTimeout", "ok"]
    assert out["r"][0][1] == {"pm25": 35.0, "pm10": 50.0}
    assert out["written"] == ["424de100010171"]  # switched to active once, no requests


def test_active_mode_only_bad_frames_is_crc_error():
    out = run_case("""
        import uartdevs, pms
        class Bad(uartdevs.PMS):
            def frame(self):
                self.fault = "checksum"
                return uartdevs.PMS.frame(self)
        machine.attach("uart", 2, Bad(mode="active", period_ms=700))
        print(json.dumps(attempt(pms.PMS(machine.UART(2), mode="active").read)))
    """)
    assert out[0] == "CRCError" and "checksum" in out[1]


def test_sleep_wake_commands_and_warmup():
    out = run_case("""
        import uartdevs, pms
        dev = machine.attach("uart", 2, uartdevs.PMS(pm25=35, pm10=50))
        u = machine.UART(2, 9600)
        d = pms.PMS(u)
        r = [attempt(d.read)]
        d.sleep()
        r.append(attempt(d.read))
        d.wake()
        r.append(attempt(d.read))
        print(json.dumps({"r": r, "written": [w.hex() for w in u.written],
                          "warmup": d.warmup_s, "dev_asleep": dev.asleep}))
    """)
    assert [x[0] for x in out["r"]] == ["ok", "SensorError", "ok"]
    assert "asleep" in out["r"][1][1]
    assert out["written"] == [
        "424de100000170",  # passive
        "424de200000171",  # read
        "424de400000173",  # sleep
        "424de400010174",  # wake
        "424de100000170",  # passive again: the sensor wakes up in active mode
        "424de200000171",
    ]
    assert out["warmup"] == 30 and out["dev_asleep"] is False


def test_set_pin_sleep():
    out = run_case("""
        import uartdevs, pms
        machine.attach("uart", 2, uartdevs.PMS())
        d = pms.PMS(machine.UART(2), set_pin=machine.Pin(25, machine.Pin.OUT))
        d.sleep(); d.wake()
        print(json.dumps(machine.pin_log))
    """)
    assert out == [[25, 1], [25, 0], [25, 1]]
