"""The server API is safe to expose: API key on everything that changes state (401/403), clear
JSON 404/422/413 errors, no stack traces, CORS off, and no 500 anywhere in the OpenAPI schema
(schemathesis)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from conftest import Proc, wait_until
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from envnet.config import load_config
from envnet.devkit.services import free_port
from server.app import create_app

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
STATE_CHANGING = {"post", "put", "patch", "delete"}


def make_app(store: Path, api_key: str = KEY) -> FastAPI:
    env = {"ENVNET_STORE_PATH": str(store), "ENVNET_SERVER_API_KEY": api_key}
    return create_app(load_config(None, environ=env))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path / "envnet.db"), raise_server_exceptions=False) as c:
        yield c


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    ops = []
    for path, item in app.openapi()["paths"].items():
        for method in item:
            ops.append((method, re.sub(r"\{[^}]+\}", "x1", path)))
    return ops


def test_every_state_changing_route_needs_the_key(client: TestClient) -> None:
    ops = [(m, p) for m, p in _operations(client.app) if m in STATE_CHANGING]
    assert ("post", "/webhooks") in ops and ("delete", "/webhooks/x1") in ops
    for method, path in ops:
        missing = client.request(method, path, json={})
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"] == "unauthorized"
        basic = client.request(method, path, json={}, headers={"Authorization": "Basic dGVzdA=="})
        assert basic.status_code == 401, (method, path)
        wrong = client.request(method, path, json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403, (method, path)
        assert wrong.json() == {"error": "forbidden", "detail": "wrong API key"}
    # the webhook reads are protected too (subscriber URLs, delivery contents)
    assert client.get("/webhooks").status_code == 401
    assert client.get("/webhooks", headers=AUTH).status_code == 200
    # public reads are not
    for path in ("/healthz", "/stations", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_no_key_configured_refuses_with_a_hint(tmp_path: Path) -> None:
    c = TestClient(make_app(tmp_path / "envnet.db", api_key=""))
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        r = c.post("/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=headers)
        assert r.status_code == 403
        assert "ENVNET_SERVER_API_KEY" in r.json()["detail"]
    assert c.get("/stations").status_code == 200


def test_not_found_is_json(client: TestClient) -> None:
    r = client.get("/webhooks/wh_0000/deliveries", headers=AUTH)
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "detail": "webhook wh_0000 is not known"}
    sub = client.post("/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=AUTH).json()
    r = client.get(f"/webhooks/{sub['id']}/deliveries/nope", headers=AUTH)
    assert r.status_code == 404 and "delivery nope" in r.json()["detail"]
    assert client.delete(f"/webhooks/{sub['id']}", headers=AUTH).status_code == 204
    assert client.delete(f"/webhooks/{sub['id']}", headers=AUTH).status_code == 404
    assert client.get("/no/such/thing").json()["error"] == "not_found"
    assert client.get("/stations/sy-999").status_code == 404
    r = client.put("/healthz")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.cn/hook"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "http://exa mple.cn/"}, "url"),
        ({"url": "http://example.cn:99999/"}, "url"),
        ({"url": "http://example.cn/", "events": ["alert.exploded"]}, "events"),
        ({"url": "http://example.cn/", "events": []}, "events"),
        ({"url": "http://example.cn/", "stations": ["NOT A STATION"]}, "stations"),
        ({"url": "http://example.cn/", "secret": "short-secret"}, "secret"),
        ({"url": "http://example.cn/", "colour": "red"}, "colour"),
        ({}, "url"),
    ],
)
def test_bad_subscriptions_are_422_naming_the_field(
    client: TestClient, body: dict, field: str
) -> None:
    r = client.post("/webhooks", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["error"] == "invalid"
    assert any(field in e["loc"] for e in out["detail"]), out
    assert all(set(e) == {"loc", "msg", "type"} for e in out["detail"])
    assert "short-secret" not in r.text  # rejected input is not echoed back


def test_malformed_json_and_bad_query_are_422(client: TestClient) -> None:
    r = client.post(
        "/webhooks",
        content=b'{"url": ',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    sub = client.post("/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=AUTH).json()
    for q in ("limit=0", "limit=501", "status=lost"):
        r = client.get(f"/webhooks/{sub['id']}/deliveries?{q}", headers=AUTH)
        assert r.status_code == 422, q


def test_unexpected_errors_show_no_stack_trace(client: TestClient) -> None:
    @client.app.get("/boom")
    def boom() -> None:
        raise RuntimeError("password=hunter2 at /srv/envnet/secret.py line 7")

    r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {
        "error": "internal_error",
        "detail": "internal error; the server log has the details",
    }
    assert "hunter2" not in r.text and "Traceback" not in r.text


def test_cors_is_off(client: TestClient) -> None:
    origin = {"Origin": "https://evil.example"}
    r = client.get("/stations", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    r = client.options(
        "/webhooks",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"


def test_body_size_limit_on_the_real_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNET_")}
    env.update(
        ENVNET_STORE_PATH=str(tmp_path / "envnet.db"),
        ENVNET_SERVER_LISTEN=f"127.0.0.1:{free_port()}",
        ENVNET_SERVER_API_KEY=KEY,
    )
    base = f"http://{env['ENVNET_SERVER_LISTEN']}"
    proc = Proc(["server", "--log-level", "warning"], env, tmp_path / "server.log").start()
    try:
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 20, 0.05)
        big = b'{"url": "http://example.cn/", "description": "' + b"x" * 70_000 + b'"}'
        r = httpx.post(
            f"{base}/webhooks", content=big, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["error"] == "too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
            yield b'{"url": "http://example.cn/", "description": "'
            for _ in range(20):
                yield b"y" * 4096
            yield b'"}'

        r = httpx.post(
            f"{base}/webhooks",
            content=chunks(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert r.status_code == 413
        # also without the key: the size limit comes first, nothing is read
        assert httpx.post(f"{base}/webhooks", content=big).status_code == 413

        def small() -> Iterator[bytes]:
            yield b'{"url": "http://example.cn/hook",'
            yield b' "description": "chunked but small"}'

        r = httpx.post(
            f"{base}/webhooks",
            content=small(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["description"] == "chunked but small"
    finally:
        proc.stop()
    assert "Traceback" not in proc.output()


# -- schemathesis: generated requests over the whole OpenAPI schema find no 500 -------------------
_schema_dir = Path(tempfile.mkdtemp(prefix="envnet-schemathesis-"))
atexit.register(shutil.rmtree, _schema_dir, True)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", make_app(_schema_dir / "envnet.db")
).exclude(path_regex="^/reports")  # need InfluxDB (503 without): tests/test_reports_api.py


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("ENVNET_SCHEMATHESIS_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize="ENVNET_SCHEMATHESIS_EXAMPLES" not in os.environ,
)
def test_schemathesis_finds_no_server_error(case) -> None:
    # With the key, so that generated data reaches the handlers behind the auth check. Not
    # with schemathesis' negative-data check: its "invalid" requests can serialize to valid
    # ones (a query value [false] for a string parameter is sent as `unit=false`, a valid
    # string; a case made invalid by leaving out Authorization gets our key), so it failed
    # now and then on requests the API rightly accepted (CI, GET /cases?unit=false). What
    # must be refused is tested directly: test_every_numeric_query_parameter_has_bounds,
    # the 401/403/422 tests above.
    case.call_and_validate(headers=AUTH, excluded_checks=[negative_data_rejection])


def test_every_numeric_query_parameter_has_bounds(client: TestClient) -> None:
    """Paging and numeric query parameters of every router state a minimum and a maximum in
    the schema, and a value outside them is a 422 (never a 500 from SQLite)."""
    seen = []
    for path, item in client.app.openapi()["paths"].items():
        for method, op in item.items():
            for p in op.get("parameters", []):
                sch = p["schema"]
                typed = [sch, *sch.get("anyOf", [])]
                num = [t for t in typed if t.get("type") in ("integer", "number")]
                if p["in"] != "query" or not num:
                    continue
                seen.append((path, p["name"]))
                bounds = {**sch, **num[0]}
                assert "minimum" in bounds and "maximum" in bounds, (method, path, p["name"])
    assert ("/stations", "offset") in seen and ("/alerts", "since") in seen
    assert ("/audit", "until") in seen and ("/reports/targets", "year") in seen
    for url in (
        "/stations?offset=261617687822842658816&limit=217",
        "/stations?offset=1000000001",
        "/alerts?since=1e300",
        "/alerts?until=nan",
        "/alerts?since=-1",
        "/audit?since=inf",
        "/reports/targets?year=99999999999999999999999",
    ):
        for headers in ({}, AUTH):
            r = client.get(url, headers=headers)
            if url.startswith("/audit") and not headers:
                assert r.status_code == 401  # the key is checked first on a protected read
                continue
            assert r.status_code == 422, (url, headers, r.status_code, r.text)
