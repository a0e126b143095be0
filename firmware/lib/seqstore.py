# Boot-persisted reading sequence number and boot counter.
# seq.json holds the first seq number NOT yet handed out-or-reserved. Numbers are
# reserved in blocks: the file is rewritten (atomically) once per BLOCK readings, and
# a crash or power cut skips the rest of the block instead of ever reusing a number
# (the gateway deduplicates on (station, seq), so reuse would lose data; a gap only
# shows as a gap). Across deep sleep the exact counter rides in RTC memory.
import fsutil

BLOCK = 32


class SeqStore:
    def __init__(self, path="seq.json", rtc=None):
        self.path = path
        if rtc and "seq" in rtc:
            # Woken from deep sleep: continue exactly, no new boot.
            self.next, self.limit, self.boot = rtc["seq"]
            return
        d = fsutil.read_json(path) or {}
        self.boot = int(d.get("boot", 0)) + 1
        self.next = max(1, int(d.get("next", 1)))
        self.limit = self.next
        self._reserve()

    def _reserve(self):
        self.limit = self.next + BLOCK
        fsutil.write_json(self.path, {"next": self.limit, "boot": self.boot})

    def release(self):
        # Before a deliberate reboot: the next boot continues at exactly self.next, so a
        # recovery (MemoryError, reboot command) leaves no gap in seq.
        self.limit = self.next
        fsutil.write_json(self.path, {"next": self.next, "boot": self.boot})

    def take(self):
        if self.next >= self.limit:
            self._reserve()
        s = self.next
        self.next += 1
        return s

    def rtc_state(self):
        return [self.next, self.limit, self.boot]
