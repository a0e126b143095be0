"""A fleet of simulated stations sharing one broker: the demo's and the tests' stations."""

from __future__ import annotations

import logging
from pathlib import Path

from envnet.config import Settings
from envnet.devkit.sim import SimStation, fleet_ids, station_config
from envnet.store.state import SqliteStateStore

log = logging.getLogger("envnet.devkit.fleet")


class Fleet:
    def __init__(self, settings: Settings, workdir: Path, interval_s: float | None = None) -> None:
        self.settings = settings
        self.workdir = Path(workdir)
        self.interval_s = interval_s
        self.stations: dict[str, SimStation] = {}

    def add(
        self,
        station_id: str,
        kind: str,
        meta: dict | None = None,
        seed: int = 1,
        sim: dict | None = None,
        data_interval_s: float | None = None,
    ) -> SimStation:
        """Create the station's flash directory and register it (as a technician would).

        `data_interval_s` is the publish interval in data time, for a compressed demo clock."""
        st = SimStation(station_id, self.workdir / station_id)
        cfg = station_config(
            station_id, kind, self.settings.mqtt.url, self.interval_s, seed=seed, sim=sim
        )
        st.write_config(cfg)
        store = SqliteStateStore(self.settings.store.location)
        try:
            interval = data_interval_s or cfg["interval_s"]
            store.register_station(station_id, kind, {"interval_s": interval, **(meta or {})})
        finally:
            store.close()
        self.stations[station_id] = st
        return st

    def add_generated(self, air: int, water: int) -> None:
        for n, (sid, kind) in enumerate(fleet_ids(air, water)):
            self.add(sid, kind, seed=n + 1)

    def start(self) -> None:
        for st in self.stations.values():
            st.start()
        log.info("started %d simulated stations", len(self.stations))

    def crashed(self) -> list[SimStation]:
        return [s for s in self.stations.values() if s.proc is not None and not s.running]

    def stop(self) -> None:
        for st in self.stations.values():
            st.stop()
