# The OTA download job (docs/ota.md), imported by the "ota" command only. It runs a
# little per loop tick (the station keeps sampling and its MQTT session alive): fetch
# manifest.json (streamed to flash, its HMAC-SHA256 computed over the chunks as they
# arrive: the manifest is never whole in RAM, nor parsed whole) + manifest.sig, check the signature with
# the fleet key first, then stream every file into the staging slot (app/a or app/b, whichever is not
# running) in 512-byte chunks, hashing as bytes arrive, re-hash everything from flash,
# and switch the boot pointer ota.json atomically. ota.py confirms or rolls back later.
import gc
import json
import os
from time import ticks_ms, ticks_diff
import binascii
import hashlib
import log
import ota
import otarules as R  # the manifest rules, generated: the server registers by the same
from ota import SLOTS, MAX_TRIES, read_ptr, write_ptr, version, _exc, _msg

CHUNK = 512  # bytes per socket read / flash write
MAN_TMP = "ota.man.tmp"  # the downloaded manifest until its slot exists

_job = None  # generator of the running download
_job_v = None
_job_st = None  # the Station it runs for
_buf = None  # the one download buffer, kept between jobs


class Fail(Exception):
    pass


def running():
    return _job is not None


def _say(st, state, reason=""):
    log.info("ota %s %s%s" % (_job_v, state, (": " + reason) if reason else ""))
    st.link.publish("ota", _msg(st, state, _job_v, version(st.FW), reason))


def _key(cfg):
    k = (cfg.get("ota") or {}).get("key") or ""
    try:
        return binascii.unhexlify(k) if k else None
    except ValueError:
        return None


def start(st, req):
    # The "ota" cmd: checks what can be checked at once (the ack says yes or no), then
    # the job runs from tick().
    global _job, _job_v, _job_st
    ver = req.get("version")
    url = req.get("url")
    if not version_ok(ver):
        raise ValueError("ota needs a version")
    if not isinstance(url, str) or not (url.startswith("http://") or url.startswith("https://")):
        raise ValueError("ota needs an http:// url")
    if _key(st.cfg) is None:
        raise ValueError("no fleet key")
    if _job is not None or ota.REBOOT:
        raise ValueError("another update in progress (%s)" % (_job_v or "rebooting"))
    if ota.PENDING:
        raise ValueError("another update in progress (%s not yet confirmed)" % ota.VERSION)
    if ver == version(st.FW):
        raise ValueError("already running %s" % ver)
    _job_v = ver
    _job_st = st
    _job = _run(st, ver, url if url.endswith("/") else url + "/")
    return {"version": ver}


def step(st, budget_ms):
    # Advance the job by about budget_ms (at least one step); report how it ended.
    global _job, _job_v
    if _job is not None and _job_st is not st:
        # A soft reboot (unix port) made a new Station: the job died with the old one.
        _job = _job_v = None
        _cleanup()
    if _job is None:
        return
    t = ticks_ms()
    try:
        while True:  # at least one step, then as many as fit in budget_ms
            next(_job)
            if ticks_diff(ticks_ms(), t) >= budget_ms:
                break
    except StopIteration:
        _job = None
    except Exception as e:  # anything: report it, keep the running version
        _job = None
        if isinstance(e, Fail):
            reason = str(e)
        elif isinstance(e, OSError) and e.args and e.args[0] == 28:  # ENOSPC
            reason = "no space: flash full"
        else:
            reason = "download error: %s" % _exc(e)
        _cleanup()
        _say(st, "failed", reason)
        _job_v = None
    gc.collect()


# --- the manifest (the rules: otarules.py; the same steps as the server's, in
# envnet/domain/ota/manifest.py, checked by tests/firmware/test_fw_ota_manifest_rules.py)
def _only(s, chars):
    # True when every character of s is in chars. Not `all(c in chars for c in s)`: each
    # character a str yields is interned for good (MicroPython never frees a name), and a
    # manifest's paths and hashes would leave every letter and digit behind.
    return not s.strip(chars)


def version_ok(v):
    return (isinstance(v, str) and 0 < len(v) <= R.VERSION_MAX
            and _only(v[:1], R.VERSION_FIRST) and _only(v, R.VERSION_CHARS)
            and not any(x in v for x in R.VERSION_FORBIDDEN))


def _safe_path(p):
    if not isinstance(p, str) or not p or p[0] == "/" or len(p) > R.PATH_MAX:
        return False
    for part in p.split("/"):
        if not part or part in (".", "..") or not _only(part, R.PATH_CHARS):
            return False
    return p not in R.PATH_RESERVED


def _int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _check_top(m, ver, key_id, nfiles):
    # The manifest's own keys (all but the file entries), then the entries' count.
    if not isinstance(m, dict) or not _int(m.get("v")) or m["v"] != R.MANIFEST_V:
        raise Fail("bad manifest: unknown format")
    v = m.get("version")
    if not version_ok(v):
        raise Fail("bad manifest: version %r is not a release version" % (v,))
    if ver is not None and v != ver:
        raise Fail("bad manifest: version %s, expected %s" % (v, ver))
    if key_id and m.get("key_id") != key_id:
        raise Fail("bad manifest: key_id %s, expected %s" % (m.get("key_id"), key_id))
    if nfiles is None or not nfiles or nfiles > R.MAX_FILES:
        raise Fail("bad manifest: files (a list of 1 to %d)" % R.MAX_FILES)


def _check_files(f, at, buf, nfiles):
    # Every entry, one at a time from flash. Duplicates: a 16-bit hash of each path seen, in
    # one block made here (a dict of the paths grew in steps of 300-600 bytes, late in a
    # fragmented heap); a hash that matches is confirmed against that entry's path, read back.
    first = at
    hs = bytearray(2 * nfiles)
    missing = list(R.REQUIRED)
    i = 0
    while True:
        e, at = _entry(f, at, buf)
        if e is None:
            break
        p, n, h = e
        if not _safe_path(p):
            raise Fail("bad manifest: unsafe file path %r" % (p,))
        x = hash(p) & 0xFFFF
        for j in range(i):
            if hs[2 * j] | hs[2 * j + 1] << 8 == x and _path_at(f, first, j, buf) == p:
                raise Fail("bad manifest: duplicate file path %r" % (p,))
        hs[2 * i] = x & 0xFF
        hs[2 * i + 1] = x >> 8
        i += 1
        if p in missing:
            missing.remove(p)
        if not _int(n) or n < 0:
            raise Fail("bad manifest: size of %s" % p)
        if (not isinstance(h, str) or len(h) != R.SHA256_LEN
                or not _only(h, R.SHA256_CHARS)):
            raise Fail("bad manifest: sha256 of %s" % p)
    if missing:
        raise Fail("bad manifest: no %s" % missing[0])


def _path_at(f, at, j, buf):
    # The path of entry j of the files array whose first entry is at offset at.
    for _ in range(j):
        at = _entry(f, at, buf)[1]
    return _entry(f, at, buf)[0][0]


# --- the manifest, streamed: never parsed whole (json.load of 39 entries was about 12 KB
# of small objects at the job's peak, docs/firmware.md "Memory"). A scan over the file
# checks that it is one JSON object, parses its own keys with json.loads and leaves the
# "files" array on flash: _entry() reads it back one entry at a time when the job needs it.
class _Rd:
    # Bytes of a file through the job's buffer; pos: offset of the next byte.
    def __init__(self, f, buf, at=0):
        f.seek(at)
        self.f, self.b, self.n, self.i, self.pos = f, buf, 0, 0, at

    def c(self):  # the next byte, -1 at the end
        if self.i >= self.n:
            self.n = self.f.readinto(self.b) or 0
            self.i = 0
            if not self.n:
                return -1
        self.i += 1
        self.pos += 1
        return self.b[self.i - 1]

    def nows(self):  # the next byte that is not JSON whitespace
        c = self.c()
        while c in (32, 9, 10, 13):
            c = self.c()
        return c


def _bad():
    raise Fail("bad manifest: not JSON")


def _span(rd, c, out):
    # One JSON value whose first byte is c, copied to out; -> the first byte after it that
    # is not whitespace. Only its extent is found here: json.loads(out) judges the syntax.
    depth = 0
    while True:
        if c < 0:
            _bad()
        out.append(c)
        if c == 34:  # a string, escapes and all
            c = rd.c()
            while c != 34:
                if c < 0:
                    _bad()
                out.append(c)
                if c == 92:
                    c = rd.c()
                    if c < 0:
                        _bad()
                    out.append(c)
                c = rd.c()
            out.append(c)
        elif c in (123, 91):  # { [
            depth += 1
        elif c in (125, 93):  # } ]
            depth -= 1
        c = rd.c()
        if depth <= 0 and (depth < 0 or c < 0 or c in (44, 58, 93, 125, 32, 9, 10, 13)):
            if depth < 0:
                _bad()
            while c in (32, 9, 10, 13):
                c = rd.c()
            return c


def _load(out):
    try:
        return json.loads(out)
    except ValueError:
        _bad()


def _scan(f, buf):
    # -> (the manifest without "files", offset of the files array's first entry or None,
    # the number of entries or None when "files" is not an array).
    rd = _Rd(f, buf)
    c = rd.nows()
    if c != 123:  # not an object: what json would make of it decides the reason
        out = bytearray()
        if _span(rd, c, out) != -1:
            _bad()
        return _load(out), None, None
    m = {}
    at = nfiles = None
    c = rd.nows()
    if c == 125:
        c = -2
    while c != -2:
        out = bytearray()
        if c != 34 or _span(rd, c, out) != 58:
            _bad()
        k = _load(out)
        c = rd.nows()
        if k == "files" and c == 91:
            at, nfiles = rd.pos, 0
            m.pop("files", None)
            c = rd.nows()
            if c != 93:
                while True:
                    out = bytearray()
                    c = _span(rd, c, out)
                    _load(out)
                    nfiles += 1
                    if c == 93:
                        break
                    if c != 44:
                        _bad()
                    c = rd.nows()
            c = rd.nows()
        else:
            out = bytearray()
            c = _span(rd, c, out)
            m[k] = _load(out)
            if k == "files":
                at = nfiles = None
        if c == 125:
            if rd.nows() != -1:
                _bad()
            c = -2
        elif c != 44:
            _bad()
        else:
            c = rd.nows()
    return m, at, nfiles


def _entry(f, at, buf):
    # The file entry at offset at of the manifest stream f -> ((path, size, sha256) (None
    # for what it lacks or when it is not a dict), offset of the next one), or (None, at)
    # after the last.
    rd = _Rd(f, buf, at)
    c = rd.nows()
    if c == 93:
        return None, at
    out = bytearray()
    c = _span(rd, c, out)
    e = json.loads(out)
    del out
    at = rd.pos - 1 if c == 93 else rd.pos  # the next entry, or the array's end again
    if not isinstance(e, dict):
        return (None, None, None), at
    return (e.get("path"), e.get("size"), e.get("sha256")), at


def _each(path, at, buf):
    # Every entry of the manifest file at path; the file is open only while one is read
    # (the job yields to the station between entries).
    while True:
        with open(path, "rb") as f:
            e, at = _entry(f, at, buf)
        if e is None:
            return
        yield e


def check_stream(f, size, buf, ver, key_id):
    # The same checks in the same order as the server's parse_manifest (after the UTF-8
    # check) -> (manifest without "files", offset of the entries).
    if size > R.MAX_MANIFEST:
        raise Fail("bad manifest: larger than %d bytes" % R.MAX_MANIFEST)
    m, at, nfiles = _scan(f, buf)
    _check_top(m, ver, key_id, nfiles)
    _check_files(f, at, buf, nfiles)
    return m, at


def load_manifest(path, size, buf, ver, key_id):
    # A manifest on flash (the download job's), read a chunk at a time into buf.
    if size > R.MAX_MANIFEST:
        raise Fail("bad manifest: larger than %d bytes" % R.MAX_MANIFEST)
    if not _utf8_file(path, buf):
        raise Fail("bad manifest: not JSON")
    with open(path, "rb") as f:
        return check_stream(f, size, buf, ver, key_id)


def _utf8_file(path, buf):
    # True when the file is UTF-8 (what raw.decode() checks in parse_manifest), decoded a
    # chunk at a time; a character cut by the chunk's end is carried to the next one.
    # Chunks of 128 bytes, not the whole buffer: decode() copies what it checks into a new
    # block, and late in a long-running station's life a 513-byte hole may be missing.
    mv = memoryview(buf)[:128]
    keep = 0
    with open(path, "rb") as f:
        while True:
            k = f.readinto(mv[keep:]) or 0
            n = keep + k
            end = n
            if k:
                i = n - 1
                while i > n - 4 and i >= 0 and buf[i] & 0xC0 == 0x80:
                    i -= 1
                if i >= 0 and buf[i] >= 0xC0:
                    end = i  # a lead byte near the end: its character may go on
            try:
                bytes(mv[:end]).decode()
            except UnicodeError:
                return False
            if not k:
                return True
            keep = n - end
            buf[:keep] = bytes(mv[end:n])


def parse_manifest(raw, ver, key_id):
    # manifest.json's bytes (signature already checked) -> (manifest without "files",
    # offset of the entries); the job's checks on bytes in RAM (the rule tests use it).
    import io
    if len(raw) > R.MAX_MANIFEST:
        raise Fail("bad manifest: larger than %d bytes" % R.MAX_MANIFEST)
    try:
        raw.decode()  # refuses bytes that are not UTF-8
    except UnicodeError:
        raise Fail("bad manifest: not JSON")
    return check_stream(io.BytesIO(raw), len(raw), bytearray(CHUNK), ver, key_id)


def _open(url):
    # HTTP/1.0 GET -> (socket positioned at the body, Content-Length or None).
    import socket
    proto, _, hostport, path = url.split("/", 3)
    host, port = hostport, 443 if proto == "https:" else 80
    if ":" in hostport:
        host, port = hostport.rsplit(":", 1)
        port = int(port)
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    s = socket.socket()
    try:
        s.settimeout(10)
        s.connect(ai)
        if proto == "https:":  # UNTESTABLE HERE: the tests serve plain http
            import ssl
            s = ssl.wrap_socket(s, server_hostname=host)
        s.write(("GET /%s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n"
                 % (path, hostport)).encode())
        line = s.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise Fail("download error: bad HTTP answer for %s" % path)
        status = int(parts[1])
        n = None
        while True:
            h = s.readline()
            if not h or h == b"\r\n" or h == b"\n":
                break
            k, _, v = h.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                n = int(v.strip())
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                raise Fail("download error: chunked answer for %s" % path)
        if status != 200:
            raise Fail("download error: HTTP %d for %s" % (status, path))
        return s, n
    except BaseException:
        s.close()
        raise


def _get_small(url, limit):
    s, n = _open(url)
    try:
        if n is not None and n > limit:
            raise Fail("download error: %s too large" % url.rsplit("/", 1)[-1])
        out = bytearray()
        while len(out) <= limit:
            b = s.read(min(CHUNK, limit + 1 - len(out)) if n is None else min(CHUNK, n - len(out)))
            if not b:
                break
            out.extend(b)
            if n is not None and len(out) >= n:
                break
        if len(out) > limit or n is not None and len(out) != n:
            raise Fail("download error: %s truncated or too large" % url.rsplit("/", 1)[-1])
        return bytes(out)
    finally:
        s.close()


def _get_to_file(url, path, limit, buf, mac):
    # Like _get_small, into a file: every chunk goes through mac (an hmac256.HMAC) and
    # to flash. -> bytes written.
    s, n = _open(url)
    name = url.rsplit("/", 1)[-1]
    try:
        if n is not None and n > limit:
            raise Fail("download error: %s too large" % name)
        mv = memoryview(buf)
        got = 0
        with open(path, "wb") as out:
            while got <= limit:
                want = min(len(buf), (limit + 1 if n is None else n) - got)
                if want <= 0:
                    break
                k = s.readinto(mv[:want])
                if not k:
                    break
                mac.update(mv[:k])
                out.write(mv[:k])
                got += k
        if got > limit or n is not None and got != n:
            raise Fail("download error: %s truncated or too large" % name)
        return got
    finally:
        s.close()


def _rmtree(d):
    try:
        items = list(os.ilistdir(d))
    except OSError:
        return
    for it in items:
        p = d + "/" + it[0]
        if it[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(d)


def _mkdirs(d):
    cur = ""
    for part in d.split("/"):
        cur = cur + "/" + part if cur else part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def _stage_slot():
    return "b" if ota.SLOT == "a" else "a"


_stage_dir = None


def _cleanup():
    global _stage_dir
    try:
        os.remove(MAN_TMP)
    except OSError:
        pass
    if _stage_dir:
        try:
            _rmtree(_stage_dir)
        except OSError:
            pass
        _stage_dir = None


def _hash_file(path, buf):
    h = hashlib.sha256()
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return binascii.hexlify(h.digest()).decode()


def _run(st, ver, base):
    # The job, as a generator: every yield hands the loop back to the station.
    global _stage_dir, _buf, _job_v
    key = _key(st.cfg)
    point = st.board.ota_point  # named points of the update (boardbase.py)
    if _buf is None:
        _buf = bytearray(CHUNK)
    buf = _buf
    _say(st, "downloading")
    yield
    import hmac256
    mac = hmac256.HMAC(key)
    size = _get_to_file(base + "manifest.json", MAN_TMP, R.MAX_MANIFEST, buf, mac)
    yield
    sig = _get_small(base + "manifest.sig", 256)
    if not hmac256.verify_hex(mac.hexdigest(), sig):
        raise Fail("bad signature")
    del sig, mac
    m, at = load_manifest(MAN_TMP, size, buf, ver, (st.cfg.get("ota") or {}).get("key_id"))
    deadline = m.get("confirm_deadline_s")
    del m
    gc.collect()
    yield
    slot = _stage_slot()
    d = SLOTS + slot
    _stage_dir = d
    _rmtree(d)  # what an earlier, unfinished or superseded update left there
    free, blk = st.board.flash_free()
    need = blk * 2
    mbuf = bytearray(64)  # reads the manifest's entries; buf carries the downloads
    for f in _each(MAN_TMP, at, mbuf):
        need += (f[1] + blk - 1) // blk * blk
    if need > free:
        raise Fail("no space: %d bytes needed, %d free" % (need, free))
    _mkdirs(d)
    # The slot's manifest now (the loader boots a slot only once the pointer names it).
    man = d + "/manifest.json"
    os.rename(MAN_TMP, man)
    mv = memoryview(buf)
    made = {}
    for i, f in enumerate(_each(man, at, mbuf)):
        path, size, sha = f
        if "/" in path:
            sub = d + "/" + path.rsplit("/", 1)[0]
            if sub not in made:
                _mkdirs(sub)
                made[sub] = 1
        s, n = _open(base + "files/" + path)
        try:
            if n is not None and n != size:
                raise Fail("size mismatch on %s: %d bytes, manifest %d" % (path, n, size))
            h = hashlib.sha256()
            got = 0
            with open(d + "/" + path, "wb") as out:
                while got < size:
                    k = s.readinto(mv[:min(CHUNK, size - got)])
                    if not k:
                        raise Fail("download error: %s cut at %d of %d bytes" % (path, got, size))
                    h.update(mv[:k])
                    out.write(mv[:k])
                    got += k
                    point("chunk", i, got, size)
                    yield
            if binascii.hexlify(h.digest()).decode() != sha:
                raise Fail("hash mismatch on %s" % path)
        finally:
            s.close()
        yield
    # What is on flash, not only what came over the wire.
    for f in _each(man, at, mbuf):
        if _hash_file(d + "/" + f[0], buf) != f[2]:
            raise Fail("hash mismatch on %s after writing" % f[0])
        yield
    _say(st, "verified")
    point("verified")  # after staging, before the switch
    p = read_ptr() or {}
    p["v"] = 1
    p["active"] = ota.SLOT
    p["active_v"] = version(st.FW)
    p["pending"] = slot
    p["pending_v"] = ver
    p["tries"] = 0
    p["max_tries"] = MAX_TRIES
    p["deadline_s"] = deadline if isinstance(deadline, int) and deadline > 0 else 300
    p["report"] = None
    write_ptr(p, point)
    _stage_dir = None
    _say(st, "switching")
    point("switched")  # after the switch, before the reboot
    _job_v = None
    ota.REBOOT = True  # fwmain hands the reboot to the loader, which boots the new slot
    st.reboot_requested = True
