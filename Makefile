# nvmeofctl: two entry points (see README.md)
#   make lab    set everything up, boot the built-in lab and provision it from its spec
#   make test   set everything up and run the whole test suite (unit + lab)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PKGS := qemu-system-x86 qemu-utils debootstrap vde2 e2fsprogs openssh-client python3-venv
LAB ?= lab

TOOLS := $(HOME)/.cache/nvmeofctl/tools
PROMTOOL := $(TOOLS)/promtool

.PHONY: setup deb venv promtool lab test unit lab-test soak clean

setup: deb venv promtool

# promtool (checks monitoring/'s alert rules) from Debian's prometheus package, unpacked into a
# cache outside the repository: installing the package would start a Prometheus server
promtool: $(PROMTOOL)
$(PROMTOOL):
	@command -v promtool >/dev/null && exit 0; set -e; tmp=$$(mktemp -d); \
	( cd $$tmp && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; }; } \
	  && dpkg-deb -x prometheus_*.deb root ) && mkdir -p $(TOOLS) && cp $$tmp/root/usr/bin/promtool $@; rm -rf $$tmp; \
	echo "promtool: $$($@ --version 2>&1 | head -n1)"

deb:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  SUDO=$$( [ $$(id -u) -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BIN)/nvmeofctl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/nvmeofctl

lab: setup
	$(BIN)/nvmeofctl lab up --name $(LAB)
	$(BIN)/nvmeofctl apply -f $$($(BIN)/nvmeofctl lab status --name $(LAB) --output json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)["spec"])')
	$(BIN)/nvmeofctl lab status --name $(LAB)

test: setup
	$(BIN)/pytest -q --durations=25 tests/unit tests/lab

unit: venv
	$(BIN)/pytest -q tests/unit

lab-test: setup
	$(BIN)/pytest -q --durations=25 tests/lab

# the long false-alarm loop issue #8 was proven with (30 x health, 10 x health --perf; ~16 min)
soak: setup
	NVMEOFCTL_SOAK=1 $(BIN)/pytest -q tests/lab/test_03_health.py -k false_alarm

clean:
	rm -rf $(VENV) .pytest_cache
