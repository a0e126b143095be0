"""One OTA manifest rule set (envnet/core/contract/ota_manifest.json) on both sides.

The same manifests, good and bad, go to the Python side (envnet/domain/ota/manifest.py, which
`envnet release` and the server's registration use) and to the station's own check
(firmware/lib/otajob.py with the generated lib/otarules.py) on the MicroPython unix port:
every verdict, and the reason, must be the same. A bundle the server registers is then one
every station accepts, and a bundle a station would refuse never gets registered.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from envnet.domain.ota import manifest  # noqa: E402

VERSION = "1.3.0"
KEY_ID = "fleet-1"
H = hashlib.sha256(b"x").hexdigest()


def _m(**over) -> dict:
    m = {
        "v": 1,
        "version": VERSION,
        "created": 1700000000,
        "key_id": KEY_ID,
        "confirm_deadline_s": 300,
        "files": [
            {"path": "main.py", "size": 1, "sha256": H},
            {"path": "lib/station.mpy", "size": 1, "sha256": H},
        ],
    }
    m.update(over)
    return m


def _with_file(**entry) -> dict:
    m = _m()
    m["files"].append({"path": "lib/x.mpy", "size": 1, "sha256": H, **entry})
    return m


def _raw(m) -> bytes:
    return json.dumps(m, separators=(",", ":")).encode()


def _many(n: int) -> dict:
    files = [{"path": "main.py", "size": 1, "sha256": H}]
    files += [{"path": f"lib/m{i}.mpy", "size": 1, "sha256": H} for i in range(n - 1)]
    return _m(files=files)


CASES: dict[str, bytes] = {
    "good": _raw(_m()),
    "good, 140 files": _raw(_many(140)),
    "200 files, over 16 KB of manifest": _raw(_many(200)),
    "good, path of 96 characters": _raw(_with_file(path="lib/" + "p" * 92)),
    "good, empty file": _raw(_with_file(size=0, sha256=hashlib.sha256(b"").hexdigest())),
    "good, extra keys": _raw({**_m(), "note": "built on ci"}),
    "not JSON": b"{not json",
    "not UTF-8": _raw(_m()).replace(b'"built', b'"\xff\xfe').replace(b"}", b',"n":"\xff"}', 1),
    "UTF-8 BOM": b"\xef\xbb\xbf" + _raw(_m()),
    "a list": _raw([_m()]),
    "v 2": _raw(_m(v=2)),
    "v true": _raw(_m(v=True)),
    "v 1.0": _raw(_m(v=1.0)),
    "v missing": _raw({k: v for k, v in _m().items() if k != "v"}),
    "other version": _raw(_m(version="1.3.1")),
    "version with traversal": _raw(_m(version="../1.3.0")),
    "version with a newline": _raw(_m(version="1.3.0\n")),
    "version not a string": _raw(_m(version=130)),
    "other key id": _raw(_m(key_id="fleet-2")),
    "no key id": _raw({k: v for k, v in _m().items() if k != "key_id"}),
    "files missing": _raw({k: v for k, v in _m().items() if k != "files"}),
    "files empty": _raw(_m(files=[])),
    "files a dict": _raw(_m(files={"main.py": {}})),
    "201 files": _raw(_many(201)),
    "file entry a string": _raw(_m(files=["main.py"])),
    "absolute path": _raw(_with_file(path="/boot.py")),
    "traversal": _raw(_with_file(path="../../config.json")),
    "dot part": _raw(_with_file(path="lib/./x.mpy")),
    "empty part": _raw(_with_file(path="lib//x.mpy")),
    "backslash": _raw(_with_file(path="lib\\x.mpy")),
    "space": _raw(_with_file(path="lib/x y.mpy")),
    "non-ASCII": _raw(_with_file(path="lib/é.mpy")),
    "NUL": _raw(_with_file(path="lib/x\u0000.mpy")),
    "path of 97 characters": _raw(_with_file(path="lib/" + "p" * 93)),
    "path manifest.json": _raw(_with_file(path="manifest.json")),
    "path not a string": _raw(_with_file(path=7)),
    "duplicate path": _raw(_with_file(path="lib/station.mpy")),
    "size negative": _raw(_with_file(size=-1)),
    "size a float": _raw(_with_file(size=1.0)),
    "size a bool": _raw(_with_file(size=True)),
    "size a string": _raw(_with_file(size="1")),
    "size missing": _raw(_m(files=[*_m()["files"], {"path": "lib/x.mpy", "sha256": H}])),
    "sha256 upper case": _raw(_with_file(sha256=H.upper())),
    "sha256 short": _raw(_with_file(sha256=H[:63])),
    "sha256 not hex": _raw(_with_file(sha256="g" * 64)),
    "no main.py": _raw(_m(files=[{"path": "lib/station.mpy", "size": 1, "sha256": H}])),
    "larger than 16 KB": _raw({**_m(), "pad": "x" * 16384}),
}


def _python_verdict(raw: bytes) -> str:
    try:
        manifest.parse_manifest(raw, VERSION, KEY_ID)
    except manifest.BundleError as e:
        return str(e)
    return "ok"


def _station_verdicts(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "cases.json").write_text(json.dumps({k: v.hex() for k, v in CASES.items()}))
    out = harness.run_mp(
        "import json, binascii, otajob\n"
        "cases = json.loads(open('cases.json').read())\n"
        "res = {}\n"
        "for name in cases:\n"
        "    try:\n"
        f"        otajob.parse_manifest(binascii.unhexlify(cases[name]), {VERSION!r}, {KEY_ID!r})\n"
        "        res[name] = 'ok'\n"
        "    except otajob.Fail as e:\n"
        "        res[name] = str(e)\n"
        "print(json.dumps(res))\n",
        cwd=tmp_path,
    )
    return json.loads(out.strip().splitlines()[-1])


def test_server_and_station_give_the_same_verdict_on_every_manifest(tmp_path):
    station = _station_verdicts(tmp_path)
    python = {name: _python_verdict(raw) for name, raw in CASES.items()}
    assert set(station) == set(CASES)
    for name in CASES:
        # The same reason; quoted values may differ in escapes (MicroPython's repr writes
        # non-ASCII as \\x..), so compare up to the first quote.
        assert station[name].split("'")[0] == python[name].split("'")[0], name
        # the cases mean what their names say
        assert (python[name] == "ok") == name.startswith("good"), (name, python[name])
        assert python[name] == "ok" or python[name].startswith("bad manifest: "), name


def test_the_server_registers_only_what_a_station_accepts(tmp_path):
    """Rules the server once lacked (a required main.py, no duplicate or reserved path, the
    path length, the file count, the manifest size) now refuse a bundle at registration."""
    for name in ("no main.py", "duplicate path", "path manifest.json", "path of 97 characters",
                 "201 files", "larger than 16 KB", "version with a newline"):  # fmt: skip
        with pytest.raises(manifest.BundleError):
            manifest.parse_manifest(CASES[name], VERSION)  # the server: no key id to compare


@pytest.mark.parametrize(
    "version",
    ["1.3.0", "1.3.0-rc.1+b7", "a" * 64, "a" * 65, "", ".hidden", "-x", "1..2", "1/2", "1 2",
     "1.3.0\n", "é"],
)  # fmt: skip
def test_the_ota_command_takes_the_versions_a_release_can_have(tmp_path, version):
    out = harness.run_mp(
        f"import otajob\nprint(otajob.version_ok({version!r}))\n", cwd=tmp_path
    ).strip()
    assert out == str(manifest.version_ok(version))


def test_the_station_reads_the_rules_from_the_generated_module():
    rules = manifest.rules()
    text = (harness.FW / "lib" / "otarules.py").read_text()
    assert f"MAX_FILES = {rules['max_files']}" in text
    assert f"PATH_MAX = {rules['path_max_len']}" in text
    assert "import otarules" in (harness.FW / "lib" / "otajob.py").read_text()
