"""Run the real Mosquitto, InfluxDB and PostgreSQL locally, on free ports, with data in a
directory we own.

Used by `make demo` (data under var/) and by the tests (data in temp dirs). The servers are the
Debian packages; nothing here fakes them. Each service is a context manager and can be stopped
and started again on the same port and data (the fault tests restart them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO_BIN = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
INFLUXD_BIN = shutil.which("influxd") or "/usr/bin/influxd"
VICTORIA_BIN = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


def _postgres_bin() -> Path:
    """Debian's postgresql-<version> binaries (not on PATH): the newest installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


class ServiceError(RuntimeError):
    """A local service could not be started; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(
                f"process exited with code {proc.returncode} before port {port} opened"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"port {port} did not open within {timeout:.0f} s")


class _Process:
    """A child process with its log file, stopped politely then firmly."""

    name = "service"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    def _spawn(self, argv: list[str]) -> None:
        log = open(self.log_path, "ab")
        # Own process group, so Ctrl-C in the terminal reaches only the parent, which stops us.
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )
        log.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS listener (and, for tests, the client side that goes with them).

    `ca` verifies the server (clients) and client certificates (broker); `cert`/`key` are the
    broker's own. `client_cert`/`client_key` are set when make_test_certs made a client
    certificate too; `ca_key` is only there so that tests can sign more."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_key: Path | None = None


OPENSSL_BIN = shutil.which("openssl") or "/usr/bin/openssl"


def _openssl(*args: str | Path, cwd: Path) -> None:
    r = subprocess.run(
        [OPENSSL_BIN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    if r.returncode:
        raise ServiceError(f"openssl {args[0]} failed: {r.stderr.strip()[-500:]}")


def make_test_certs(
    outdir: Path,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    ca_name: str = "envnet test CA",
    client_cn: str | None = "envnet-gateway",
    days: int = 30,
) -> TlsFiles:
    """A private CA and a server certificate for `hosts` (DNS and IP subjectAltNames), made
    with the openssl CLI; plus a client certificate signed by the same CA when `client_cn`.

    EC P-256 keys: what an ESP32 verifies fastest, and mbedTLS, OpenSSL and Mosquitto all
    take them. For tests and a first real set-up; docs/operations.md says how to run a CA
    for real (renewal, one CA file on every station)."""
    if not Path(OPENSSL_BIN).exists():
        raise ServiceError("openssl is not installed (apt-get install openssl)")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days),
        "-subj", f"/CN={ca_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=out,
    )  # fmt: skip

    def issue(name: str, cn: str, ext: str) -> None:
        (out / f"{name}.ext").write_text(ext)
        _openssl(
            "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
            cwd=out,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), "-sha256",
            "-extfile", f"{name}.ext",
            cwd=out,
        )  # fmt: skip

    san = ",".join(
        f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts
    )
    issue(
        "server",
        hosts[0],
        f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    if client_cn:
        issue(
            "client",
            client_cn,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\n",
        )
    for key in out.glob("*.key"):
        key.chmod(0o600)
    return TlsFiles(
        ca=out / "ca.crt",
        cert=out / "server.crt",
        key=out / "server.key",
        client_cert=out / "client.crt" if client_cn else None,
        client_key=out / "client.key" if client_cn else None,
        ca_key=out / "ca.key",
    )


class Mosquitto(_Process):
    """Mosquitto 2 with persistence on, anonymous access unless a password file is given.

    With `tls`, a second listener on `tls_port` speaks MQTT over TLS (TLS 1.2+) with the
    given certificate; `require_certificate` makes it ask clients for a certificate signed
    by `tls.ca` as well. Passwords and the ACL apply to both listeners alike."""

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        extra_conf: str = "",
        tls: TlsFiles | None = None,
        tls_port: int | None = None,
        require_certificate: bool = False,
    ) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.password_file = password_file
        self.acl_file = acl_file
        self.extra_conf = extra_conf
        self.tls = tls
        self.tls_port = (tls_port or free_port()) if tls else None
        self.require_certificate = require_certificate
        self.conf_path = self.workdir / "mosquitto.conf"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """mqtts:// URL of the TLS listener, by a name its certificate carries."""
        if self.tls_port is None:
            raise ServiceError("this Mosquitto has no TLS listener")
        return f"mqtts://localhost:{self.tls_port}"

    def write_conf(self) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 1",
            # Gateways queue QoS 1 messages while down; a backlog of a few minutes of a city
            # network must not be dropped by the broker's default limits.
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to user "mosquitto", which cannot write into our (root
            # owned, 0700) temp dirs: persistence would silently fail and lose queued messages.
            lines.append("user root")
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        if self.tls:
            # Listener options follow their `listener` line; the global ones stay above.
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                "tls_version tlsv1.2",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        self.conf_path.write_text("\n".join(lines) + "\n" + self.extra_conf)

    def start(self, timeout: float = 15.0) -> None:
        if not Path(MOSQUITTO_BIN).exists():
            raise ServiceError("mosquitto is not installed (apt-get install mosquitto)")
        self.write_conf()
        self._spawn([MOSQUITTO_BIN, "-c", str(self.conf_path)])
        try:
            wait_for_port(self.port, timeout, self.proc)
            if self.tls_port:
                wait_for_port(self.tls_port, timeout, self.proc)
        except ServiceError as e:
            raise ServiceError(f"mosquitto: {e}\n{self.log_tail()}") from None


class InfluxDB(_Process):
    """InfluxDB 1.x (Debian's 1.6) with HTTP on a free port and one database created."""

    name = "influxd"

    def __init__(self, workdir: Path, port: int | None = None, database: str = "envnet") -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.rpc_port = free_port()
        self.database = database
        self.conf_path = self.workdir / "influxdb.conf"
        # Ports we picked may be taken between free_port() and influxd's bind (another
        # process's ephemeral port): the first start then picks again. A restart keeps its
        # port (clients are configured with it), and so does a port the caller gave.
        self._may_repick = port is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_conf(self) -> None:
        d = self.workdir
        self.conf_path.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
"""
        )

    def start(self, timeout: float = 30.0) -> None:
        for attempt in range(3):
            try:
                self._start(timeout)
                break
            except ServiceError as e:
                if not (self._may_repick and "address already in use" in str(e)) or attempt == 2:
                    raise
                self.port, self.rpc_port = free_port(), free_port()
        self._may_repick = False

    def _start(self, timeout: float) -> None:
        if not Path(INFLUXD_BIN).exists():
            raise ServiceError("influxd is not installed (apt-get install influxdb)")
        self.write_conf()
        env = dict(os.environ, INFLUXDB_CONFIG_PATH=str(self.conf_path))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [INFLUXD_BIN, "run", "-config", str(self.conf_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"influxd exited early:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/ping", timeout=1).close()
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        else:
            raise ServiceError(f"influxd did not answer /ping within {timeout:.0f} s")
        self.query(f'CREATE DATABASE "{self.database}"', method="POST")

    def query(self, q: str, method: str = "GET", epoch: str = "s") -> dict:
        """Run InfluxQL through the HTTP API and return the decoded JSON."""
        import json

        params = urllib.parse.urlencode({"q": q, "db": self.database, "epoch": epoch})
        if method == "POST":
            req = urllib.request.Request(f"{self.url}/query", data=params.encode(), method="POST")
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        else:
            req = urllib.request.Request(f"{self.url}/query?{params}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def rows(self, q: str) -> list[dict]:
        """Rows of the first series of an InfluxQL query, as dicts (empty when no series)."""
        res = self.query(q)["results"][0]
        if "error" in res:
            raise ServiceError(f"InfluxQL error: {res['error']}")
        out: list[dict] = []
        for series in res.get("series", []):
            cols = series["columns"]
            for values in series["values"]:
                row = dict(zip(cols, values, strict=True))
                row.update(series.get("tags", {}))
                out.append(row)
        return out


class VictoriaMetrics(_Process):
    """VictoriaMetrics (Debian's `victoria-metrics`): a real server that accepts InfluxDB line
    protocol on the v2 write API (/api/v2/write), for the influxdb-client write path.

    It keeps numeric fields only (`<measurement>_<field>` series, tags as labels); `export`
    reads them back."""

    name = "victoria-metrics"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if not Path(VICTORIA_BIN).exists():
            raise ServiceError(
                "victoria-metrics is not installed (apt-get install victoria-metrics)"
            )
        self._spawn(
            [
                VICTORIA_BIN,
                f"-storageDataPath={self.workdir / 'data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y",
                "-search.disableCache",
                "-loggerLevel=ERROR",
            ]
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"victoria-metrics exited early:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1).close()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise ServiceError(f"victoria-metrics did not answer /health within {timeout:.0f} s")

    def export(self, match: str) -> list[dict]:
        """Every stored sample of the series matching `match` (a PromQL series selector), as
        {"metric": {...labels}, "values": [...], "timestamps": [...ms]} per series."""
        import json

        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).close()
        q = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=30) as r:
            return [json.loads(line) for line in r.read().splitlines() if line.strip()]


class PostgreSQL(_Process):
    """PostgreSQL (Debian's `postgresql`) on a unix socket only (no TCP), for the shared
    state store of several gateways (store.url). Made for tests: trust authentication, no
    fsync. Its data and socket are in a temp dir of its own (owned by the `postgres` user
    when we are root, since PostgreSQL refuses to run as root), removed on exit; stop() and
    start() keep them."""

    name = "postgresql"

    def __init__(self, workdir: Path, database: str = "envnet") -> None:
        super().__init__(workdir)
        self.port = free_port()  # no TCP: the socket's name carries it (.s.PGSQL.<port>)
        self.database = database
        self.bin = _postgres_bin()
        self._as = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="envnet-pg-"))  # short: a socket path
        self.data = self.root / "data"
        self.log_path = self.root / "postgresql.log"
        self.role = self._as or os.environ.get("USER") or "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self.role}@/{self.database}?host={self.root}&port={self.port}"

    def _run(self, *argv: str | Path) -> None:
        r = subprocess.run(
            [str(a) for a in argv], user=self._as, capture_output=True, text=True, cwd=self.root
        )
        if r.returncode:
            raise ServiceError(f"{Path(str(argv[0])).name}: {r.stderr.strip() or r.stdout}")

    def start(self, timeout: float = 30.0) -> None:
        if not (self.bin / "postgres").exists():
            raise ServiceError("PostgreSQL is not installed (apt-get install postgresql)")
        if self._as:
            shutil.chown(self.root, self._as, self._as)
        fresh = not self.data.exists()
        if fresh:
            self._run(
                self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", self.role,
                "-E", "UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
        opts = (
            f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            self.bin / "pg_ctl", "-D", self.data, "-l", self.log_path, "-o", opts,
            "-w", "-t", str(int(timeout)), "start",
        )  # fmt: skip
        if fresh:
            self._run(
                self.bin / "createdb", "-h", self.root, "-p", str(self.port), "-U", self.role,
                self.database,
            )  # fmt: skip

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Fast shutdown: open sessions are ended (their transactions rolled back)."""
        if self.running:
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def component_env(
    workdir: Path, mosquitto: Mosquitto, influx: InfluxDB, name: str, **extra: str
) -> dict[str, str]:
    """The environment for an envnet gateway or server process on these local services.

    The caller's own ENVNET_* variables are dropped so that nothing leaks in; `name` keeps
    several gateways apart (MQTT client id and buffer file); `extra` overrides any key.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNET_")}
    env.update(
        ENVNET_MQTT_URL=mosquitto.url,
        ENVNET_MQTT_CLIENT_ID=f"gw-{name}",
        ENVNET_INFLUX_URL=influx.url,
        ENVNET_INFLUX_DATABASE=influx.database,
        ENVNET_INFLUX_FLUSH_INTERVAL_S="0.2",
        ENVNET_STORE_PATH=str(Path(workdir) / "envnet.db"),
        ENVNET_GATEWAY_BUFFER_PATH=str(Path(workdir) / f"buffer-{name}.db"),
        ENVNET_SERVER_LISTEN=f"127.0.0.1:{free_port()}",
    )
    env.update(extra)
    return env
