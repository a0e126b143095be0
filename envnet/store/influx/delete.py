"""Deleting points from InfluxDB: the one function every rewrite of stored figures goes through.

A reviewer's invalidation or restore rewrites stored figures (server/review/recompute.py), and
a withdrawn calibration deletes its corrected values (corrected.py): both delete points by
measurement, tags and time, then write the new ones. Each InfluxDB generation deletes
differently, so the generation is asked once per server (`GET /ping`, its version header):

- **1.x**: InfluxQL `DELETE FROM "m" WHERE "tag" = 'v' AND time >= .. AND time <= ..` over
  `/query` (every 1.x; the version envnet tests against, Debian's 1.6).
- **2.x**: the v2 delete API, `POST /api/v2/delete` with start, stop and a predicate
  (`_measurement="m" AND "tag"="v"`), through influxdb-client's DeleteApi (the project's
  dependency for the v2 write API already). 2.x's /query compatibility API has no DELETE.
  Start and stop are both inclusive there, as here. This path is NOT tested against a real
  InfluxDB 2 in this repository (none is installable here, and the v2-compatible stand-ins
  available have no /api/v2/delete); tests cover the 1.x path on a real InfluxDB 1.6.
- **3.x**: InfluxDB 3 cannot delete points (only whole tables or databases). A delete is
  refused with DeleteUnsupported, and counted (`refused()`, exported by the server's
  /metrics as `envnet_influx_delete_refused_total`), rather than leaving stale figures in
  place silently; docs/review.md says what that means for review on 3.x.

Only equality on tags and a time range are offered: it is all the v2 predicate language and
InfluxQL DELETE share (no OR, no field conditions).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx

from envnet.config import InfluxSettings
from envnet.store.influx.reports import InfluxQL, influxql_string

log = logging.getLogger("envnet.influx")

# The last second InfluxDB can store (2262-04-11T23:47:16Z): "from t on" deletes stop here.
END_OF_TIME = 9_223_372_036


class InfluxDeleteError(RuntimeError):
    """InfluxDB did not delete the points; str() says why."""


class DeleteUnsupported(InfluxDeleteError):
    """The server's generation cannot delete points (InfluxDB 3.x)."""


_lock = threading.Lock()
_generations: dict[str, int] = {}  # url -> major version, asked once per process
_refused = 0


def refused() -> int:
    """Deletes refused by this process because the server cannot delete (3.x)."""
    return _refused


def generation_of(version: str) -> int:
    """The major version in a /ping version string: '1.6.7~rc0' -> 1, 'v2.7.4' -> 2,
    '3.0.1' -> 3; an unreadable one -> 1 (InfluxQL DELETE; a server without it answers
    with an error that is passed on)."""
    m = re.match(r"\s*v?(\d+)\.", version or "")
    return int(m.group(1)) if m else 1


def server_generation(s: InfluxSettings) -> int:
    with _lock:
        known = _generations.get(s.url)
    if known is not None:
        return known
    try:
        r = httpx.get(f"{s.url}/ping", timeout=s.timeout_s)
    except httpx.HTTPError as e:
        raise InfluxDeleteError(f"InfluxDB at {s.url} unreachable: {e}") from None
    version = r.headers.get("X-Influxdb-Version", "")
    if not version and r.headers.get("content-type", "").startswith("application/json"):
        version = str(r.json().get("version", ""))  # InfluxDB 3 answers /ping with JSON
    gen = generation_of(version)
    log.info("InfluxDB at %s reports version %r: deletes use the %d.x way", s.url, version, gen)
    with _lock:
        _generations[s.url] = gen
    return gen


def _ident(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', r"\"") + '"'


def influxql_delete(measurement: str, tags: Mapping[str, str], first: int, last: int) -> str:
    conds = [f"{_ident(k)} = {influxql_string(v)}" for k, v in tags.items()]
    conds.append(f"time >= {first}s AND time <= {last}s")
    return f"DELETE FROM {_ident(measurement)} WHERE {' AND '.join(conds)}"


def v2_predicate(measurement: str, tags: Mapping[str, str]) -> str:
    """The v2 delete predicate: keys quoted (`window`, `section` and friends may be
    InfluxQL keywords), values double-quoted."""
    conds = [f"_measurement={_ident(measurement)}"]
    conds += [f"{_ident(k)}={_ident(v)}" for k, v in tags.items()]
    return " AND ".join(conds)


def delete_points(
    db: InfluxQL, measurement: str, tags: Mapping[str, str], first: int, last: int
) -> None:
    """Delete the points of `measurement` whose tags equal `tags` with first <= time <= last
    (unix seconds). Raises DeleteUnsupported on InfluxDB 3.x, InfluxDeleteError (or the
    query error of InfluxQL) when the server refuses."""
    if last < first:
        raise ValueError(f"empty time range {first}..{last}")
    _delete(db, server_generation(db.s), measurement, tags, first, last)


def _delete(
    db: InfluxQL, gen: int, measurement: str, tags: Mapping[str, str], first: int, last: int
) -> None:
    global _refused
    if gen >= 3:
        with _lock:
            _refused += 1
        raise DeleteUnsupported(
            f"InfluxDB {gen}.x cannot delete points, so the stored figures of"
            f" {measurement!r} ({', '.join(f'{k}={v}' for k, v in tags.items())}) were not"
            " rewritten: run envnet's review against InfluxDB 1.x or 2.x (docs/review.md)"
        )
    if gen == 2:
        _delete_v2(db.s, measurement, tags, first, last)
    else:
        db.series(influxql_delete(measurement, tags, first, last))


def _delete_v2(
    s: InfluxSettings, measurement: str, tags: Mapping[str, str], first: int, last: int
) -> None:
    """Untested against a real InfluxDB 2 here (see the module docstring)."""
    from influxdb_client import InfluxDBClient
    from influxdb_client.rest import ApiException

    token = s.token or (f"{s.username}:{s.password}" if s.username else "")
    rp = f"/{s.retention_policy}" if s.retention_policy else ""
    bucket = s.bucket or f"{s.database}{rp}"  # 1.8's "db/rp" form, as the v2 write API
    with InfluxDBClient(url=s.url, token=token, org=s.org, timeout=int(s.timeout_s * 1000)) as c:
        try:
            c.delete_api().delete(
                start=datetime.fromtimestamp(first, UTC),
                stop=datetime.fromtimestamp(last, UTC),
                predicate=v2_predicate(measurement, tags),
                bucket=bucket,
                org=s.org,
            )
        except ApiException as e:
            raise InfluxDeleteError(
                f"InfluxDB delete HTTP {e.status}: {str(e.body or e.reason)[:300]}"
            ) from None
        except Exception as e:  # urllib3 connection errors and timeouts
            raise InfluxDeleteError(f"InfluxDB delete failed: {type(e).__name__}: {e}") from None
