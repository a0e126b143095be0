"""Grafana dashboards for envnet, generated from Python with grafana-foundation-sdk.

Four dashboards over InfluxDB (InfluxQL, see docs/grafana.md): City air, Station, Rivers and
Network health. `generate(out_dir)` writes them as JSON files for Grafana's file provisioning;
`python -m envnet.devkit.grafana` regenerates grafana/dashboards/ in the repo (`--check`
only compares).

  builder      InfluxQL targets, panels with envnet's defaults, variables, the dashboard shell
  fields       labels, units, thresholds and value mappings from the standards and the contract
  health       the station health panels the Station and Network dashboards share
  city_air, station, rivers, network    one module per dashboard
  validation   SDK model round trip, the shipped JSON Schema (jsonschema), grid layout
  generator    build, validate, write; the command line (__main__)
"""

try:
    import grafana_foundation_sdk  # noqa: F401
    import jsonschema  # noqa: F401
except ImportError as e:  # dev dependencies: the gateway and server do not need them
    raise ImportError(f"envnet.devkit.grafana needs {e.name} (pip install -e '.[dev]')") from e

from envnet.devkit.grafana.builder import DATASOURCE_UID
from envnet.devkit.grafana.generator import DASHBOARDS, DASHBOARDS_DIR, build_all, dumps, generate
from envnet.devkit.grafana.validation import SCHEMA_PATH, validate

__all__ = [
    "DASHBOARDS",
    "DASHBOARDS_DIR",
    "DATASOURCE_UID",
    "SCHEMA_PATH",
    "build_all",
    "dumps",
    "generate",
    "validate",
]
