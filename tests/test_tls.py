"""MQTT over TLS, all real: certificates made with the openssl CLI, Mosquitto with a TLS
listener beside the plain one, the gateway over mqtts:// into InfluxDB, and the firmware on
the MicroPython unix port (its mbedTLS 3.6) verifying the broker. And the refusals: a wrong
CA, a certificate that does not carry the name dialled, plain TCP on the TLS port, a station
without its CA file, a client without a certificate where one is required.

UNTESTABLE HERE: the ESP32 build's TLS (same MicroPython `ssl`/`tls` API and mbedTLS family,
but ESP-IDF's configuration, heap and handshake time on a 240 MHz core); see docs/firmware.md.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import Proc, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from envnet.devkit.services import (
    OPENSSL_BIN,
    InfluxDB,
    Mosquitto,
    TlsFiles,
    component_env,
    free_port,
    make_test_certs,
)
from envnet.devkit.sim import FIRMWARE_DIR, SimStation, micropython_bin, station_config
from envnet.tools import provision as pv

pytestmark = pytest.mark.skipif(not Path(OPENSSL_BIN).exists(), reason="openssl not installed")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_certs(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def impostor(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """The same names signed by another CA: what a man in the middle would present."""
    return make_test_certs(tmp_path_factory.mktemp("impostor"), ca_name="impostor CA")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: TlsFiles) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mq", tls=pki) as m:
        yield m


def reading(seq: int, station_kind: str = "air") -> bytes:
    return json.dumps(
        {"v": 1, "seq": seq, "ts": round(time.time(), 3), "kind": station_kind,
         "values": {"pm25": 12.5 + seq, "pm10": 30.0}, "flags": {}}
    ).encode()  # fmt: skip


def tls_client(
    ca: Path | None, cert: Path | None = None, key: Path | None = None, cid: str = ""
) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=cid or f"tls-test-{time.monotonic_ns()}",
    )
    c.tls_set(
        ca_certs=str(ca) if ca else None,
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
    )
    return c


def try_connect(c: mqtt.Client, host: str, port: int, timeout: float = 5.0) -> str:
    """'ok' when CONNACK accepted us, else what went wrong (handshake error, refusal, close)."""
    got: dict[str, str] = {}
    done = threading.Event()

    def on_connect(client, userdata, flags, rc, props=None) -> None:
        got["r"] = "ok" if not rc.is_failure else f"refused: {rc}"
        done.set()

    def on_disconnect(client, userdata, flags, rc, props=None) -> None:
        got.setdefault("r", f"closed: {rc}")
        done.set()

    c.on_connect, c.on_disconnect = on_connect, on_disconnect
    try:
        c.connect(host, port, keepalive=10)  # the TLS handshake happens here
    except (ssl.SSLError, OSError) as e:
        return f"handshake: {e!r}"
    c.loop_start()
    try:
        done.wait(timeout)
    finally:
        c.loop_stop()
        c.disconnect()
    return got.get("r", "no CONNACK")


def test_openssl_makes_a_ca_and_certificates_that_verify(pki: TlsFiles, impostor: TlsFiles):
    def verify(ca: Path, cert: Path, purpose: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [OPENSSL_BIN, "verify", "-CAfile", str(ca), "-purpose", purpose, str(cert)],
            capture_output=True,
            text=True,
        )

    assert verify(pki.ca, pki.cert, "sslserver").returncode == 0
    assert verify(pki.ca, pki.client_cert, "sslclient").returncode == 0
    assert verify(impostor.ca, pki.cert, "sslserver").returncode != 0  # other CA: no chain
    assert verify(pki.ca, pki.client_cert, "sslserver").returncode != 0  # client-only cert
    text = subprocess.run(
        [OPENSSL_BIN, "x509", "-in", str(pki.cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert pki.key.stat().st_mode & 0o077 == 0 and pki.ca_key.stat().st_mode & 0o077 == 0


def test_broker_speaks_tls_on_its_tls_port_and_refuses_what_it_should(
    tls_broker: Mosquitto, pki: TlsFiles, impostor: TlsFiles
) -> None:
    # Plain subscriber on the plain listener; a publisher over TLS reaches it (one broker).
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="plain-sub")
    got: list[bytes] = []
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("envnet/#", qos=1)
    sub.connect("127.0.0.1", tls_broker.port)
    sub.loop_start()
    try:
        for host in ("localhost", "127.0.0.1"):  # DNS and IP subjectAltName
            pub = tls_client(pki.ca)
            pub.connect(host, tls_broker.tls_port)
            pub.loop_start()
            time.sleep(0.3)  # let the subscription settle
            pub.publish("envnet/v1/tls-pub/reading", host.encode(), qos=1).wait_for_publish(10)
            pub.loop_stop()
            pub.disconnect()
        wait_until(lambda: got == [b"localhost", b"127.0.0.1"], 10, what=f"TLS publishes: {got}")
    finally:
        sub.loop_stop()
        sub.disconnect()

    # A client that trusts another CA refuses the broker's certificate.
    r = try_connect(tls_client(impostor.ca), "localhost", tls_broker.tls_port)
    assert r.startswith("handshake:") and "CERTIFICATE_VERIFY_FAILED" in r, r
    # The right CA, but a name the certificate does not carry: refused too.
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
            ctx.wrap_socket(raw, server_hostname="broker.example.org")
    # Plain MQTT on the TLS port: no CONNACK, only a TLS alert or a closed connection.
    connect = b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06plain1"
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as raw:
        raw.sendall(connect)
        try:
            answer = raw.recv(64)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20"), answer  # 0x20 would be a CONNACK
    plain = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="plain")
    assert try_connect(plain, "127.0.0.1", tls_broker.tls_port) != "ok"
    # TLS on the plain port fails the other way round.
    assert try_connect(tls_client(pki.ca), "localhost", tls_broker.port).startswith("handshake:")


def test_client_certificates_when_the_broker_requires_them(
    tmp_path: Path, pki: TlsFiles, impostor: TlsFiles
) -> None:
    with Mosquitto(tmp_path / "mq", tls=pki, require_certificate=True) as m:
        assert try_connect(tls_client(pki.ca, pki.client_cert, pki.client_key), "localhost",
                           m.tls_port) == "ok"  # fmt: skip
        assert try_connect(tls_client(pki.ca), "localhost", m.tls_port) != "ok"
        foreign = tls_client(pki.ca, impostor.client_cert, impostor.client_key)
        assert try_connect(foreign, "localhost", m.tls_port) != "ok"
        # The gateway with mqtt.cert_file/key_file gets in; without them it does not.
        # No InfluxDB needed to subscribe: the gateway buffers and retries its writes.
        env = component_env(
            tmp_path, m, InfluxDB(tmp_path / "no-influx"), "cert",
            ENVNET_MQTT_URL=m.tls_url, ENVNET_MQTT_CA_FILE=str(pki.ca),
            ENVNET_MQTT_CERT_FILE=str(pki.client_cert),
            ENVNET_MQTT_KEY_FILE=str(pki.client_key),
        )  # fmt: skip
        no_cert = {
            k: v
            for k, v in env.items()
            if k not in ("ENVNET_MQTT_CERT_FILE", "ENVNET_MQTT_KEY_FILE")
        }
        no_cert.update(
            ENVNET_MQTT_CLIENT_ID="gw-nocert",
            ENVNET_GATEWAY_BUFFER_PATH=str(tmp_path / "buffer-nocert.db"),
        )
        good = Proc(["gateway"], env, tmp_path / "gw-cert.log").start()
        bad = Proc(["gateway"], no_cert, tmp_path / "gw-nocert.log").start()
        try:
            wait_until(lambda: "subscribed to" in good.output(), 30, what="gateway with cert")
            time.sleep(2)
            assert "subscribed to" not in bad.output()
            assert bad.p.poll() is None  # alive and retrying, not crashed
        finally:
            good.stop()
            bad.stop()


def _gateway_env(tmp_path: Path, broker: Mosquitto, influx: InfluxDB, name: str, **extra):
    return component_env(tmp_path, broker, influx, name, **extra)


def _station(tmp_path: Path, sid: str, url: str, ca: Path | None, **cfg) -> SimStation:
    st = SimStation(sid, tmp_path / "stations" / sid)
    config = station_config(sid, "air", url, 1.0)
    config["mqtt"].update(cfg.pop("mqtt", {}))
    config.update(cfg)
    st.write_config(config)
    if ca is not None:
        shutil.copy(ca, st.workdir / "ca.pem")
    return st


def test_station_and_gateway_over_tls_with_passwords_into_influxdb(
    tmp_path: Path, pki: TlsFiles, influxdb: InfluxDB
) -> None:
    """The deployment shape: per-station password and ACL, every hop over TLS, the firmware
    verifying the broker; readings land in InfluxDB. A paho publisher over TLS too."""
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    pv.add_password(pw, "gateway", "gw-secret")
    pv.add_password(pw, "tls-air-01", "st-secret")
    pv.add_password(pw, "tls-pub-01", "pub-secret")
    acl.write_text(
        "user gateway\ntopic readwrite envnet/#\n"
        "user tls-air-01\ntopic write envnet/v1/tls-air-01/#\ntopic read envnet/v1/tls-air-01/cmd\n"
        "user tls-pub-01\ntopic write envnet/v1/tls-pub-01/#\n"
    )
    with Mosquitto(tmp_path / "mq", password_file=pw, acl_file=acl, tls=pki) as broker:
        env = _gateway_env(
            tmp_path, broker, influxdb, f"tls-{free_port()}",
            ENVNET_MQTT_URL=broker.tls_url, ENVNET_MQTT_CA_FILE=str(pki.ca),
            ENVNET_MQTT_USERNAME="gateway", ENVNET_MQTT_PASSWORD="gw-secret",
        )  # fmt: skip
        gw = Proc(["gateway"], env, tmp_path / "gateway.log").start()
        st = _station(
            tmp_path, "tls-air-01", broker.tls_url, pki.ca,
            mqtt={"user": "tls-air-01", "password": "st-secret"},
        )  # fmt: skip
        try:
            wait_until(lambda: "subscribed to" in gw.output(), 30, what="gateway over mqtts")
            assert f"connected to {broker.tls_url}" in gw.output()
            st.start()
            pub = tls_client(pki.ca)
            pub.username_pw_set("tls-pub-01", "pub-secret")
            assert try_connect(pub, "localhost", broker.tls_port) == "ok"
            pub.connect("localhost", broker.tls_port)
            pub.loop_start()
            pub.publish("envnet/v1/tls-pub-01/reading", reading(1), qos=1).wait_for_publish(10)
            pub.loop_stop()
            pub.disconnect()
            rows = wait_until(
                lambda: influxdb.rows("SELECT pm25, seq FROM air WHERE station='tls-pub-01'"),
                30,
                what=f"paho reading over TLS in InfluxDB\n{gw.output()[-2000:]}",
            )
            assert [(r["seq"], r["pm25"]) for r in rows] == [(1, 13.5)]
            fw = wait_until(
                lambda: len(
                    influxdb.rows("SELECT seq FROM air WHERE station='tls-air-01'")
                ) >= 2 and influxdb.rows("SELECT seq FROM air WHERE station='tls-air-01'"),
                40,
                what=f"firmware readings over TLS in InfluxDB\n{st.log_tail()}",
            )  # fmt: skip
            assert {r["seq"] for r in fw} >= {1, 2}
            assert f"mqtt connected to localhost:{broker.tls_port} (tls)" in st.log_tail(200)
        finally:
            st.kill()
            gw.stop()


def test_refusals_gateway_and_firmware(
    tmp_path: Path, pki: TlsFiles, impostor: TlsFiles, influxdb: InfluxDB
) -> None:
    """Nothing that should not get through does: wrong CA, wrong name, plain TCP to the TLS
    port, no CA file. All started together; the control station proves the set-up works."""
    elsewhere = make_test_certs(tmp_path / "elsewhere", hosts=("broker.example.org",))
    with (
        Mosquitto(tmp_path / "mq", tls=pki) as broker,
        Mosquitto(tmp_path / "mq2", tls=elsewhere) as other,
    ):
        seen: list[str] = []
        sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="watch")
        sub.on_message = lambda c, u, m: seen.append(m.topic)
        sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("envnet/#", qos=1)
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        sub2 = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="watch2")
        sub2.on_message = lambda c, u, m: seen.append(m.topic)
        sub2.on_connect = lambda c, u, f, rc, p=None: c.subscribe("envnet/#", qos=1)
        sub2.connect("127.0.0.1", other.port)
        sub2.loop_start()
        url = broker.tls_url
        stations = {
            "fw-control": _station(tmp_path, "fw-control", url, pki.ca),
            "fw-wrong-ca": _station(tmp_path, "fw-wrong-ca", url, impostor.ca),
            "fw-no-ca": _station(tmp_path, "fw-no-ca", url, None),
            "fw-plain": _station(
                tmp_path, "fw-plain", f"mqtt://127.0.0.1:{broker.tls_port}", pki.ca
            ),
            # The right CA for that broker, but its certificate is for broker.example.org.
            "fw-wrong-name": _station(
                tmp_path, "fw-wrong-name", f"mqtts://127.0.0.1:{other.tls_port}", elsewhere.ca
            ),
        }
        gateways = {
            "impostor-ca": Proc(
                ["gateway"],
                _gateway_env(
                    tmp_path,
                    broker,
                    influxdb,
                    "impostor",
                    ENVNET_MQTT_URL=url,
                    ENVNET_MQTT_CA_FILE=str(impostor.ca),
                ),
                tmp_path / "gw-impostor.log",
            ),  # fmt: skip
            "plain-to-tls": Proc(
                ["gateway"],
                _gateway_env(
                    tmp_path,
                    broker,
                    influxdb,
                    "plain",
                    ENVNET_MQTT_URL=f"mqtt://127.0.0.1:{broker.tls_port}",
                ),
                tmp_path / "gw-plain.log",
            ),  # fmt: skip
        }
        try:
            for p in gateways.values():
                p.start()
            for st in stations.values():
                st.start()
            wait_until(
                lambda: "envnet/v1/fw-control/reading" in seen,
                30,
                what=f"control station\n{stations['fw-control'].log_tail()}",
            )
            time.sleep(3)  # the others had as long and more: several reconnect attempts
            heard = {t.split("/")[2] for t in seen}
            assert heard == {"fw-control"}, heard
            # Each refused for its own reason (mbedTLS's words on this port), none crashed.
            reasons = {
                "fw-wrong-ca": "mqtt down (tls: The certificate is not correctly signed",
                "fw-wrong-name": "mqtt down (tls: The certificate Common Name (CN) does not match",
                "fw-no-ca": "mqtt down (tls: CA file ca.pem: OSError(2,))",
                "fw-plain": "mqtt down (",
            }
            for sid, st in stations.items():
                log = st.log_tail(500)
                assert st.running, f"{sid} crashed:\n{log}"
                if sid != "fw-control":
                    assert "mqtt connected" not in log and reasons[sid] in log, f"{sid}:\n{log}"
            gw_reasons = {"impostor-ca": "CERTIFICATE_VERIFY_FAILED", "plain-to-tls": "MQTT disc"}
            for name, p in gateways.items():
                assert p.p.poll() is None, f"gateway {name} exited:\n{p.output()}"
                assert "subscribed to" not in p.output(), name
                assert gw_reasons[name] in p.output(), p.output()
            assert influxdb.rows("SELECT seq FROM air") == []  # no gateway got in to write
        finally:
            for st in stations.values():
                st.kill()
            for p in gateways.values():
                p.stop()
            for s in (sub, sub2):
                s.loop_stop()
                s.disconnect()


def test_firmware_tls_settings_are_provisioned_not_remotely_settable(tmp_path: Path) -> None:
    cfg = station_config("tls-cfg-01", "air", "mqtts://localhost:8883", 60)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    code = (
        "import config\n"
        "c = config.load()\n"
        "print(c['mqtt']['tls'], c['mqtt']['ca'])\n"
        "for k, v in (('mqtt.tls', False), ('mqtt.ca', 'x.pem')):\n"
        "    try:\n"
        "        config.update(c, {k: v}); print('SET', k)\n"
        "    except ValueError as e:\n"
        "        print('REFUSED', e)\n"
        "c['mqtt']['ca'] = ''\n"
        "try:\n"
        "    config.check(c); print('ACCEPTED empty ca')\n"
        "except config.ConfigError as e:\n"
        "    print('BAD', e)\n"
    )
    out = subprocess.run(
        [micropython_bin(), "-c", code],
        cwd=tmp_path,
        env={"MICROPYPATH": f"{FIRMWARE_DIR / 'lib'}:{FIRMWARE_DIR}"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "True ca.pem", out.stdout + out.stderr
    assert lines[1] == "REFUSED mqtt.tls is not settable"
    assert lines[2] == "REFUSED mqtt.ca is not settable"
    assert lines[3].startswith("BAD config.json: mqtt.ca out of range"), lines[3]


def test_provisioned_station_carries_its_ca_and_connects_over_tls(
    tmp_path: Path, pki: TlsFiles
) -> None:
    """envnet provision with an mqtts:// broker copies mqtt.ca_file next to config.json,
    envnet flash plans it onto the board, and the station as provisioned gets in (with its
    own password, under the ACL provision wrote). Without a CA file: refused, nothing written."""
    from envnet.tools import flash

    out, store = tmp_path / "st", tmp_path / "envnet.db"
    port = free_port()
    url = f"mqtts://localhost:{port}"
    args = ("sy-air-tls", "air", "site", "sim-air", out, url, store)
    files = (out / "mosquitto.passwd", out / "mosquitto.acl")
    with pytest.raises(pv.ProvisionError, match="mqtt.ca_file"):
        pv.provision(*args, *files)
    assert not (out / "sy-air-tls").exists()
    cfg = pv.provision(*args, *files, ca_file=pki.ca)
    assert cfg["mqtt"]["tls"] is True and cfg["mqtt"]["host"] == "localhost"
    assert (out / "sy-air-tls" / "ca.pem").read_bytes() == pki.ca.read_bytes()
    plan = flash.plan_files(out / "sy-air-tls", False, tmp_path / "build")
    assert "ca.pem" in {i.dest for i in plan}
    seen: list[str] = []
    with Mosquitto(tmp_path / "mq", password_file=files[0], acl_file=files[1], tls=pki,
                   tls_port=port) as broker:  # fmt: skip
        pv.add_password(files[0], "watch", "w")
        with open(files[1], "a") as f:
            f.write("\nuser watch\ntopic read envnet/#\n")
        broker.stop()
        broker.start()  # re-read the password file
        sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="watch")
        sub.username_pw_set("watch", "w")
        sub.on_message = lambda c, u, m: seen.append(m.topic)
        sub.on_connect = lambda c, u, f, rc, p=None: c.subscribe("envnet/#", qos=1)
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        st = SimStation("sy-air-tls", out / "sy-air-tls")
        cfg["interval_s"], cfg["sample_s"] = 1, 0.2  # as provisioned, only faster
        st.write_config(cfg)
        st.start()
        try:
            wait_until(
                lambda: "envnet/v1/sy-air-tls/reading" in seen,
                30,
                what=f"provisioned station over TLS\n{st.log_tail()}",
            )
        finally:
            st.kill()
            sub.loop_stop()
            sub.disconnect()


def test_broker_certificate_renewal_takes_effect_on_sighup(tmp_path: Path, pki: TlsFiles):
    """docs/operations.md, Renewal: replace the files, `systemctl reload mosquitto`."""
    import signal

    renewed = make_test_certs(tmp_path / "renewed", ca_name="renewed CA", client_cn=None)
    live = tmp_path / "live"
    live.mkdir()
    for f in (pki.ca, pki.cert, pki.key):
        shutil.copy(f, live / f.name)
    files = TlsFiles(ca=live / "ca.crt", cert=live / "server.crt", key=live / "server.key")
    with Mosquitto(tmp_path / "mq", tls=files) as m:
        assert try_connect(tls_client(pki.ca), "localhost", m.tls_port) == "ok"
        shutil.copy(renewed.cert, live / "server.crt")
        shutil.copy(renewed.key, live / "server.key")
        m.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: try_connect(tls_client(renewed.ca), "localhost", m.tls_port) == "ok",
            10,
            what="the renewed certificate after SIGHUP",
        )
        assert try_connect(tls_client(pki.ca), "localhost", m.tls_port) != "ok"
