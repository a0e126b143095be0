# Small-file persistence that survives power loss: write a temp file, then rename over
# the old one (rename is atomic on LittleFS and POSIX), so a reader sees old or new,
# never half a file.
import json
import os


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT (some boards) refuses to rename over an existing file.
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)


def write_json(path, obj):
    write_atomic(path, json.dumps(obj))


def read_json(path, default=None):
    # Missing or unreadable -> default; a left-over .tmp from an interrupted write is
    # only used if the main file is gone (the FAT fallback above).
    for p in (path, path + ".tmp"):
        try:
            with open(p) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            pass
    return default


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False
