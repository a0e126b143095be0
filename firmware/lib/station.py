# The station: one cooperative loop (no threads, no asyncio) that samples, closes a
# window every interval into a reading, publishes it (QoS 1) or puts it in the flash
# ring buffer, replays the buffer when the link is back, sends health, and serves
# commands from MQTT and the console.
#
# Modes:
#   continuous (air stations, mains): run() loops until a reboot is requested.
#   deep sleep (battery water probes, cfg deep_sleep): run() is one wake cycle --
#   burst of samples, publish, replay, disconnect cleanly -- and returns "sleep";
#   main.py then deep-sleeps the board. State that must outlive the sleep (seq,
#   buffer position, clock sync, health timer) goes to RTC memory.
import gc
import json
import sys
import time
from time import ticks_ms, ticks_diff, ticks_add
from micropython import const
import log
import reading
import health
from net import Link
from sampler import Sampler
from seqstore import SeqStore
from ringbuf import RingBuffer

FW = "0.2.0"
# const(): an underscored constant is folded in at compile time, so its name is never
# interned on the board (names stay in the heap for good).
_IDLE_MS = const(50)  # loop granularity: console and MQTT latency
_RESYNC_MS = const(6 * 3600 * 1000)
_OOM_REBOOT = const(3)  # MemoryErrors in a row before the station reboots to a clean heap
# Loaded for one command and freed after it (their bytecode lives in the heap on a board).
_ON_DEMAND = ("commands", "config")


def _ms(s):
    return int(s * 1000)


class Station:
    FW = FW

    def __init__(self, cfg, board):
        self.cfg = cfg
        self.board = board
        self.t_boot = ticks_ms()
        self.reset_cause = board.reset_cause()
        ota = sys.modules.get("ota")  # loaded only by a boot from a pointer, or an update
        self.FW = ota.version(FW) if ota else FW  # a slot's version is its manifest's
        self.acked = 0  # readings/health the broker acknowledged (confirms an OTA update)
        rtc = board.rtc_load() if self.reset_cause == "deepsleep" else None
        self.rtc = rtc or {}
        self.errors = {}
        self.seq = SeqStore(rtc=rtc)
        try:
            board.fault_point("boot")
            b = cfg["buffer"]
            self.buf = RingBuffer("buf.dat", b["slots"], b["slot_size"], hint=self.rtc.get("rb"))
            # The replay payload's one block, made now, while the heap is still in one
            # piece: after a long outage (a thousand readings made and buffered) no 2 KB
            # hole may be left for it (docs/firmware.md "Memory").
            self.rbuf = bytearray(b["replay_bytes"] + b["slot_size"])
            self.sampler = Sampler(cfg["kind"], board.sensors(cfg), self.errors)
            self.link = Link(cfg, board, self.errors, self.birth)
        except MemoryError:
            self.seq.release()  # no reading was made: the next boot continues at this seq
            raise
        self.unsent = None  # a reading made but not yet published nor buffered
        self.oom = 0  # MemoryErrors in a row
        self.synced = bool(self.rtc.get("synced")) or board.clock_synced()
        self.sync_at = ticks_ms()
        self.last_reading = None  # (seq, ts) of the newest reading made
        self.reboot_requested = False
        self.awake_ms = self.rtc.get("awake")
        self.health_dirty = self.reset_cause != "deepsleep"  # health at (cold) start
        self.console = None
        self.pub_bytes = 0  # payload bytes of the last reading published live
        self._connects = 0
        log.info("boot %d (%s) %s %s fw %s, %d buffered" % (
            self.seq.boot, self.reset_cause, cfg["station_id"], cfg["kind"], self.FW, len(self.buf)))

    # --- facts ------------------------------------------------------------------
    def uptime_s(self):
        return ticks_diff(ticks_ms(), self.t_boot) // 1000

    def birth(self):
        return {"state": "online", "fw": self.FW, "kind": self.cfg["kind"], "boot": self.seq.boot}

    def status(self):
        return {
            "station_id": self.cfg["station_id"], "kind": self.cfg["kind"], "fw": self.FW,
            "board": self.cfg["board"], "boot": self.seq.boot, "uptime_s": self.uptime_s(),
            "reset_cause": self.reset_cause, "next_seq": self.seq.next,
            "connected": self.link.up, "wifi": self.board.wifi_up(),
            "clock_synced": self.synced, "maint": bool(self.cfg["maint"]),
            "buffered": len(self.buf), "dropped": self.buf.dropped,
            "last_reading": self.last_reading, "heap_free": self.board.heap_free(),
            "asleep": [k for k in self.sampler.asleep if self.sampler.asleep[k]],
            "errors": self.errors,
        }

    def apply(self, changed):
        # Config changes take effect now, without a restart.
        for k in changed:
            if k.startswith("mqtt.") and self.link.up:
                self.link.drop("config changed")
                self.link.fails = 0
                self.link.retry_at = ticks_ms()
            elif k in ("interval_s", "sample_s", "health_s"):
                self._schedule()
            elif k == "maint":
                self.health_dirty = True

    # --- work -------------------------------------------------------------------
    def _clock(self):
        # NTP until synced (readings carry "*":"clock" meanwhile), then every 6 h
        # against RTC drift (a few s/day on an ESP32).
        if not self.synced:
            self.synced = self.board.sync_clock(self.cfg["ntp"]["host"])
            if self.synced:
                self.sync_at = ticks_ms()
                log.info("clock synced")
                self.health_dirty = True
        elif self.board.clock_lost():
            self.synced = False  # the simulated board can take the sync away
            self.health_dirty = True
        elif ticks_diff(ticks_ms(), self.sync_at) > _RESYNC_MS:
            self.sync_at = ticks_ms()
            self.board.sync_clock(self.cfg["ntp"]["host"])

    def make_reading(self):
        # Close the window -> encoded reading (str), or None if nothing was measured.
        values, flags = self.sampler.close(maint=self.cfg["maint"])
        if self.cfg["pm_rh_correction"] and "pm25" in values and "rh" in values:
            import pmcorr
            values["pm25"] = pmcorr.epa2021(values["pm25"], values["rh"])
        if not values:
            self.errors["empty"] = self.errors.get("empty", 0) + 1
            log.warn("window without any value; nothing published")
            return None
        self._clock()
        if not self.synced:
            flags["*"] = "clock"
        seq = self.seq.next
        ts = self.board.now()
        text = reading.encode(seq, ts, self.cfg["kind"], values, flags)
        self.seq.take()  # only now: a MemoryError above leaves no gap in seq
        self.last_reading = [seq, ts]
        self.unsent = text
        return text

    def send_reading(self, text):
        # Live publish if nothing is waiting (keeps order), else to the ring buffer.
        self.unsent = text
        if not len(self.buf) and self.link.up:
            gc.collect()
            self.board.fault_point("publish")
            if self.link.publish("reading", text):
                self.unsent = None
                self.acked += 1
                self.pub_bytes = len(text)
                log.info("reading %s" % text)
                return True
        return self._buffer(text)

    def _buffer(self, text):
        self.unsent = None
        was = len(self.buf)
        dropped = self.buf.dropped
        try:
            self.buf.append(text)
        except (OSError, ValueError) as e:
            self.errors["buf"] = self.errors.get("buf", 0) + 1
            log.error("buffer: %s" % e)
            return False
        if not was or self.buf.dropped != dropped:
            self.health_dirty = True
        log.info("buffered seq %d (%d waiting)" % (self.last_reading[0], len(self.buf)))
        return False

    def replay(self):
        # One batch of buffered readings as a JSON array, oldest first, built in rbuf.
        # rbuf: one block made at boot and kept, instead of a list, a join and a
        # concatenation per batch (a long outage replays hundreds of batches).
        n, k, span = self.buf.peek_into(self.rbuf, self.cfg["buffer"]["batch"])
        if not span:
            return
        if k:
            self.board.fault_point("replay")
            if not self.link.publish("reading", memoryview(self.rbuf)[:n]):
                return
            log.info("replayed %d, %d waiting" % (span, len(self.buf) - span))
        self.buf.commit(span)
        if not len(self.buf):
            self.health_dirty = True

    def send_health(self):
        if not self.link.up:
            return False
        gc.collect()
        ok = self.link.publish("health", json.dumps(health.build(self)))
        if ok:
            self.health_dirty = False
            self.acked += 1
        return ok

    def on_message(self, msg):
        topic, payload = msg
        if not topic.endswith("/cmd"):
            return
        try:
            req = json.loads(payload)
        except ValueError:
            req = None
        res = self.command(req) if req is not None else {
            "id": None, "ok": False, "error": "bad JSON"}
        log.info("cmd %s -> %s" % (req.get("op") if isinstance(req, dict) else "?", res["ok"]))
        self.link.publish("cmd/ack", json.dumps(res))

    def command(self, req):
        # One command (MQTT or console): its modules are loaded for it and freed after.
        self.board.fault_point("command")
        import commands
        try:
            return commands.handle(self, req)
        finally:
            for m in _ON_DEMAND:
                sys.modules.pop(m, None)

    def out_of_memory(self, where):
        # A MemoryError is survived: the session goes (a packet may be half written), the
        # reading in flight goes to the ring buffer, and after _OOM_REBOOT in a row the
        # station reboots with its seq saved exactly (a clean heap; the watchdog would
        # reset a board that cannot even do that).
        text, self.unsent = self.unsent, None
        gc.collect()
        self.oom += 1
        self.errors["mem"] = self.errors.get("mem", 0) + 1
        log.error("MemoryError in %s (%d in a row, %d free)" % (where, self.oom, gc.mem_free()))
        self.link.drop("MemoryError")
        if text:
            self._buffer(text)
        self.health_dirty = True
        if self.oom >= _OOM_REBOOT:
            log.error("out of memory: rebooting")
            self.reboot_requested = True

    # --- continuous mode ----------------------------------------------------------
    def _schedule(self):
        now = ticks_ms()
        self.next_sample = now
        self.next_pub = ticks_add(now, _ms(self.cfg["interval_s"]))
        self.next_health = ticks_add(now, _ms(self.cfg["health_s"]))

    def run(self):
        if self.cfg["deep_sleep"]:
            return self.run_cycle()
        from console import Console
        self.console = Console(self)
        self._schedule()
        self._clock()
        while not self.reboot_requested:
            self.step()
            if self.cfg["deep_sleep"]:  # switched on by config set: sleep from now on
                self.link.disconnect()
                return self.run_cycle()
            time.sleep_ms(_IDLE_MS)
        return "reboot"

    def step(self):
        try:
            self._step()
            self.oom = 0
        except MemoryError:
            try:
                self.out_of_memory("step")
            except MemoryError:  # not even that: reboot (seq saved by fwmain)
                self.reboot_requested = True

    def _step(self):
        self.board.feed()
        self.console.tick()
        msg = self.link.tick()
        if msg:
            self.on_message(msg)
        if self.link.connects != self._connects:  # (re)connected: tell the server now
            self._connects = self.link.connects
            self.health_dirty = True
        now = ticks_ms()
        if ticks_diff(now, self.next_sample) >= 0:
            self.board.fault_point("sample")
            self.sampler.sample()
            self.next_sample = ticks_add(self.next_sample, _ms(self.cfg["sample_s"]))
            if ticks_diff(now, self.next_sample) > 0:  # fell behind: do not burst
                self.next_sample = ticks_add(now, _ms(self.cfg["sample_s"]))
        if ticks_diff(now, self.next_pub) >= 0:
            self.next_pub = ticks_add(self.next_pub, _ms(self.cfg["interval_s"]))
            if ticks_diff(now, self.next_pub) > 0:
                self.next_pub = ticks_add(now, _ms(self.cfg["interval_s"]))
            text = self.make_reading()
            if self.cfg["duty"]:
                self.sampler.duty_sleep(self.cfg["duty"], _ms(self.cfg["interval_s"]),
                                        self._active_ms())
            if text:
                self.send_reading(text)
        elif self.cfg["duty"]:
            self.sampler.duty_wake(ticks_diff(self.next_pub, now), self._active_ms())
        if self.link.up:
            if ticks_diff(now, self.next_health) >= 0 or self.health_dirty:
                self.next_health = ticks_add(now, _ms(self.cfg["health_s"]))
                self.send_health()
            if len(self.buf):
                self.replay()
        ota = sys.modules.get("ota")
        if ota and ota.busy():
            ota.tick(self)
        if self.unsent:  # a reading a MemoryError left behind: never a gap in seq
            self._buffer(self.unsent)

    def _active_ms(self):
        # Awake stretch before a window closes for duty-cycled sensors: six samples, so
        # that the min/max trim still has four good ones.
        return 6 * _ms(self.cfg["sample_s"])

    # --- deep-sleep mode -----------------------------------------------------------
    def run_cycle(self):
        # One wake: connect while sampling, publish, replay, health when due, sleep.
        # Returns "sleep" (main.py sleeps the board for self.sleep_ms) or "reboot".
        t0 = ticks_ms()
        try:
            self._wake()
        except MemoryError:
            self.out_of_memory("wake")
        if self.unsent:
            self._buffer(self.unsent)
        return self._sleep(t0)

    def _wake(self):
        cfg = self.cfg
        self.board.feed()
        self.link.tick()  # starts Wi-Fi; MQTT connects once it is up
        n = cfg["burst_n"]
        for i in range(n):
            self.board.fault_point("sample")
            self.sampler.sample()
            if i < n - 1:
                self._wait_ms(cfg["burst_ms"])
        text = self.make_reading()
        deadline = ticks_add(ticks_ms(), 3000)  # do not burn the battery on a dead AP
        while not self.link.up and ticks_diff(deadline, ticks_ms()) > 0:
            self._wait_ms(50)
        if text:
            self.send_reading(text)
        for _ in range(5):  # bounded replay per wake; the rest next time
            if not (self.link.up and len(self.buf)):
                break
            self.replay()
        while self.link.up:  # commands queued for us while we slept
            msg = self.link.tick()
            if not msg:
                break
            self.on_message(msg)
        ota = sys.modules.get("ota")
        while ota and ota.busy() and not ota.REBOOT and self.link.up:  # update in this wake
            ota.tick(self, 1000)
            if not ota.job_running():
                break
        now = self.board.now()
        if self.link.up and (self.health_dirty
                             or now - self.rtc.get("health_ts", 0) >= cfg["health_s"]):
            if self.send_health():
                self.rtc["health_ts"] = now

    def _sleep(self, t0):
        cfg = self.cfg
        self.link.disconnect()
        self.awake_ms = ticks_diff(ticks_ms(), t0)
        self.sleep_ms = max(0, _ms(cfg["interval_s"]) - self.awake_ms)
        self.board.rtc_save({"seq": self.seq.rtc_state(), "rb": self.buf.state(),
                             "synced": self.synced, "awake": self.awake_ms,
                             "health_ts": self.rtc.get("health_ts", 0)})
        log.info("awake %d ms, sleeping %d ms" % (self.awake_ms, self.sleep_ms))
        return "reboot" if self.reboot_requested else "sleep"

    def _wait_ms(self, ms):
        # Sleep while keeping the link moving (connect happens during the burst).
        end = ticks_add(ticks_ms(), ms)
        while True:
            self.board.feed()
            msg = self.link.tick()
            if msg:
                self.on_message(msg)
            left = ticks_diff(end, ticks_ms())
            if left <= 0:
                return
            time.sleep_ms(min(left, 20))
