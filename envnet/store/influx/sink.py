"""Writing line protocol to InfluxDB: the v2 write API where the server has it, v1 /write otherwise.

Both carry identical line protocol (millisecond precision). `influx.api = "auto"` asks the
server's /ping for its version: 1.8+, 2.x and 3.x have /api/v2/write; Debian's 1.6 has not.
"""

from __future__ import annotations

import logging
import re

import httpx

from envnet.config import InfluxSettings

log = logging.getLogger("envnet.gateway.influx")


class InfluxWriteError(Exception):
    """`retryable` is False when the server refused the data itself (HTTP 400, 413)."""

    def __init__(self, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def api_for_version(version: str) -> str:
    """'1.6.7~rc0' -> v1; '1.8.10', '2.7.1', 'v2.7.4', '3.0.0' -> v2."""
    m = re.match(r"v?(\d+)\.(\d+)", version or "")
    if not m:
        return "v1"
    major, minor = int(m.group(1)), int(m.group(2))
    return "v2" if major >= 2 or (major == 1 and minor >= 8) else "v1"


def _classify(status: int, text: str) -> InfluxWriteError:
    retryable = status >= 500 or status in (401, 403, 404, 408, 429)
    return InfluxWriteError(f"HTTP {status}: {text.strip()[:300]}", retryable, status)


class V1Sink:
    """POST /write?db=..&precision=ms (InfluxDB 1.x, and the compatibility API of 2.x/3.x)."""

    api = "v1"

    def __init__(self, s: InfluxSettings) -> None:
        self.s = s
        self.http = httpx.Client(base_url=s.url, timeout=s.timeout_s)
        self.params = {"db": s.database, "precision": "ms"}
        if s.retention_policy:
            self.params["rp"] = s.retention_policy
        if s.username:
            self.params.update(u=s.username, p=s.password)

    def ensure_database(self) -> None:
        """CREATE DATABASE is idempotent on 1.x; a failure here is reported, not fatal."""
        q = {"q": f'CREATE DATABASE "{self.s.database}"'}
        if self.s.username:
            q.update(u=self.s.username, p=self.s.password)
        self.http.post("/query", data=q)

    def write(self, lines: list[str]) -> None:
        try:
            r = self.http.post("/write", params=self.params, content="\n".join(lines).encode())
        except httpx.HTTPError as e:
            raise InfluxWriteError(f"{type(e).__name__}: {e}", retryable=True) from e
        if r.status_code != 204:
            raise _classify(r.status_code, r.text)

    def close(self) -> None:
        self.http.close()


class V2Sink:
    """influxdb-client's write API (InfluxDB 1.8+ with v2 compatibility, 2.x, 3.x)."""

    api = "v2"

    def __init__(self, s: InfluxSettings) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        # 1.8's v2 compatibility API takes "user:password" as the token, "db/rp" as the bucket.
        token = s.token or (f"{s.username}:{s.password}" if s.username else "")
        self.bucket = s.bucket or (
            f"{s.database}/{s.retention_policy}" if s.retention_policy else s.database
        )
        self.org = s.org
        self.client = InfluxDBClient(
            url=s.url, token=token, org=s.org, timeout=int(s.timeout_s * 1000)
        )
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)

    def ensure_database(self) -> None:
        """Buckets are created by the operator on 2.x/3.x; nothing to do here."""

    def write(self, lines: list[str]) -> None:
        from influxdb_client.client.write_api import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self.write_api.write(
                bucket=self.bucket,
                org=self.org,
                record="\n".join(lines),
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]  # a str constant
            )
        except ApiException as e:
            raise _classify(e.status or 0, str(e.body or e.reason)) from e
        except Exception as e:  # urllib3 connection errors and timeouts
            raise InfluxWriteError(f"{type(e).__name__}: {e}", retryable=True) from e

    def close(self) -> None:
        self.client.close()


def detect_api(s: InfluxSettings) -> str:
    """Resolve "auto" by the server's X-Influxdb-Version header; raise if unreachable."""
    if s.api != "auto":
        return s.api
    try:
        r = httpx.get(f"{s.url}/ping", timeout=s.timeout_s)
    except httpx.HTTPError as e:
        raise InfluxWriteError(f"cannot reach {s.url}/ping: {e}", retryable=True) from e
    version = r.headers.get("X-Influxdb-Version", "")
    api = api_for_version(version)
    log.info("InfluxDB at %s reports version %r: using the %s write API", s.url, version, api)
    return api


def make_sink(s: InfluxSettings) -> V1Sink | V2Sink:
    return V2Sink(s) if detect_api(s) == "v2" else V1Sink(s)
