"""The developer kit's service launchers against the real binaries."""

from __future__ import annotations

import socket
from pathlib import Path

from envnet.devkit.services import InfluxDB


def test_influxdb_picks_other_ports_when_its_port_was_taken(tmp_path: Path) -> None:
    """Between free_port() and influxd's bind another process may take the port (seen in CI:
    'bind: address already in use'); a first start then picks again instead of failing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        db = InfluxDB(tmp_path / "influxdb")
        db.port = taken.getsockname()[1]  # as if the port had been taken after it was picked
        try:
            db.start()
            assert db.port != taken.getsockname()[1]
            names = db.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
            assert ["envnet"] in names  # started and answering on the new port
        finally:
            db.stop()
