"""`python -m envnet.devkit.grafana [OUT_DIR] [--edition E] [--check]`."""

import sys

from envnet.devkit.grafana.generator import main

sys.exit(main())
