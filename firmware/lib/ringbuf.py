# Offline ring buffer on flash: readings that could not be published, replayed
# oldest first. One file of `slots` fixed-size slots; record number r lives in slot
# r % slots. Slot layout (little endian):
#   magic u8 0xE5 | version u8 1 | len u16 | rno u32 | crc32 u32 (of rno + data) | data
# Record numbers grow forever, so the newest records are found by scanning headers at
# boot; no index has to be kept in step with the data. A write cut by power loss
# leaves a slot whose CRC fails: it is skipped, and earlier records (other slots) are
# untouched. The consumed position (tail) and the dropped count live in a small
# meta file written atomically after each replayed batch. Overflow overwrites the
# oldest slot, advances the tail and counts it in `dropped`.
import struct
from micropython import const
import fsutil

try:
    from binascii import crc32
except ImportError:  # builds without it: plain bitwise CRC-32
    def crc32(data, crc=0):
        crc ^= 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
        return crc ^ 0xFFFFFFFF

_HDR = "<BBHII"
_HLEN = const(12)  # const(): the names are never interned on the board
_MAGIC = const(0xE5)


class RingBuffer:
    def __init__(self, path="buf.dat", slots=1000, slot_size=384, hint=None):
        self.path = path
        self.meta = path + ".meta"
        self.slots = slots
        self.slot_size = slot_size
        self.bad = 0  # records found corrupt (skipped)
        if not fsutil.exists(path):
            open(path, "wb").close()
        m = fsutil.read_json(self.meta) or {}
        self.dropped = int(m.get("dropped", 0))
        tail = int(m.get("tail", 0))
        if hint:
            # Woken from deep sleep: RTC memory remembers where we were.
            self.head, self.tail, self.dropped = hint
            return
        head = self._scan(tail)
        if head is None:
            head = tail  # nothing valid on flash: continue numbering after the tail
        self.head = head
        self.tail = min(head, max(tail, head - slots))

    def _scan(self, tail):
        # Highest valid record number + 1, or None. One pass over the headers, then
        # CRC checks from the top down: only the newest record can be torn by a power
        # cut, so normally one check suffices.
        top = None
        with open(self.path, "rb") as f:
            for i in range(self.slots):
                f.seek(i * self.slot_size)
                h = f.read(_HLEN)
                if len(h) < _HLEN:
                    break
                if h[0] == _MAGIC and h[1] == 1:
                    rno = struct.unpack(_HDR, h)[3]
                    if top is None or rno > top:
                        top = rno
            if top is None:
                return None
            low = max(tail, top - self.slots + 1)
            while top >= low:
                if self._read(f, top % self.slots, top) is not None:
                    return top + 1
                top -= 1
        return None

    def _read(self, f, slot, rno):
        # Data of record rno from its slot, or None if absent, stale or corrupt.
        f.seek(slot * self.slot_size)
        h = f.read(_HLEN)
        if len(h) < _HLEN:
            return None
        magic, ver, n, r, crc = struct.unpack(_HDR, h)
        if magic != _MAGIC or r != rno or n > self.slot_size - _HLEN:
            return None
        data = f.read(n)
        if len(data) != n or crc32(data, crc32(h[4:8])) & 0xFFFFFFFF != crc:
            return None
        return data

    def __len__(self):
        return self.head - self.tail

    def append(self, data):
        # data: bytes or str of one encoded reading.
        if isinstance(data, str):
            data = data.encode()
        n = len(data)
        if n > self.slot_size - _HLEN:
            raise ValueError("record too big")
        rno = self.head
        rb = struct.pack("<I", rno)
        hdr = struct.pack(_HDR, _MAGIC, 1, n, rno, crc32(data, crc32(rb)) & 0xFFFFFFFF)
        with open(self.path, "r+b") as f:
            f.seek((rno % self.slots) * self.slot_size)
            f.write(hdr)
            f.write(data)
        self.head = rno + 1
        if self.head - self.tail > self.slots:
            self.tail = self.head - self.slots
            self.dropped += 1
            self._save()

    def peek(self, max_n=10, max_bytes=2048):
        # Oldest pending records: (list of bytes, number of slots they span). Corrupt
        # records are skipped but counted in the span so that commit() passes them.
        out = []
        size = 0
        rno = self.tail
        with open(self.path, "rb") as f:
            while rno < self.head and len(out) < max_n:
                d = self._read(f, rno % self.slots, rno)
                if d is None:
                    self.bad += 1
                else:
                    if out and size + len(d) > max_bytes:
                        break
                    out.append(d)
                    size += len(d) + 1
                rno += 1
        return out, rno - self.tail

    def peek_into(self, buf, max_n=10):
        # The oldest pending records as a JSON array, read from flash straight into buf
        # (a bytearray longer than a slot): no bytes object per record, no join.
        # -> (bytes used, records in it, slots spanned). Corrupt records are skipped but
        # spanned, so that commit() passes them.
        mv = memoryview(buf)
        end = len(buf) - 1  # room for the closing bracket
        n = 1  # after the opening one
        k = 0
        rno = self.tail
        hdr = bytearray(_HLEN)
        with open(self.path, "rb") as f:
            while rno < self.head and k < max_n:
                f.seek((rno % self.slots) * self.slot_size)
                ln = self._header_into(f, hdr, rno)
                at = n + 1 if k else n  # after a comma
                if ln is not None and at + ln > end:
                    if k:
                        break  # full: the rest goes in the next batch
                    ln = None  # cannot fit even alone
                if ln is not None:
                    d = mv[at:at + ln]
                    if f.readinto(d) == ln and crc32(d, crc32(hdr[4:8])) & 0xFFFFFFFF == self._crc:
                        if k:
                            buf[n] = 0x2C  # ,
                        n = at + ln
                        k += 1
                    else:
                        ln = None
                if ln is None:
                    self.bad += 1
                rno += 1
        buf[0] = 0x5B  # [
        buf[n] = 0x5D  # ]
        return n + 1, k, rno - self.tail

    def _header_into(self, f, hdr, rno):
        # Read a slot header into hdr; -> data length if it is record rno, else None.
        if f.readinto(hdr) != _HLEN:
            return None
        magic, ver, n, r, crc = struct.unpack(_HDR, hdr)
        if magic != _MAGIC or r != rno or n > self.slot_size - _HLEN:
            return None
        self._crc = crc
        return n

    def commit(self, span):
        # The first `span` pending records were delivered.
        self.tail = min(self.head, self.tail + span)
        self._save()

    def _save(self):
        fsutil.write_json(self.meta, {"tail": self.tail, "dropped": self.dropped})

    def state(self):
        return [self.head, self.tail, self.dropped]
