# nvmeofctl: two entry points (see README.md)
#   make lab    set everything up, boot the built-in lab and provision it from its spec
#   make test   set everything up and run the whole test suite (unit + lab)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PKGS := qemu-system-x86 qemu-utils debootstrap vde2 e2fsprogs openssh-client python3-venv
LAB ?= lab

.PHONY: setup deb venv lab test unit lab-test clean

setup: deb venv

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
	$(BIN)/pytest -q tests/unit tests/lab

unit: venv
	$(BIN)/pytest -q tests/unit

lab-test: setup
	$(BIN)/pytest -q tests/lab

clean:
	rm -rf $(VENV) .pytest_cache
