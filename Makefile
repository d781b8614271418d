# Every target installs what it needs; run as root on Debian 12 (the lab uses namespaces).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := openssh-server openssh-client memcached redis-server tini iptables iproute2 \
	procps psmisc stress-ng podman netcat-openbsd docker.io busybox-static sudo openipmi ipmitool lua5.4 lua5.1 jq \
	libvirt-daemon-system libvirt-dev pkg-config prometheus mariadb-server rabbitmq-server ganeti socat

.PHONY: install system-packages venv lint test demo lab-up lab-down clean

install: system-packages venv

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:$$missing"; \
		apt-get update -o DPkg::Lock::Timeout=600 -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends $$missing; \
	fi

venv: $(BIN)/faultline

$(BIN)/faultline: pyproject.toml $(shell find operator -name "*.py")
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,delivery,power]' --config-settings editable_mode=strict
	touch $@

lint: venv
	$(BIN)/ruff check --no-cache operator tests benchmarks
	$(BIN)/ruff format --no-cache --check operator tests benchmarks
	$(BIN)/mypy -p faultline
	$(BIN)/lint-imports --no-cache

test: install lint
	$(BIN)/pytest -q -rfEs

demo: install
	$(BIN)/faultline lab demo --examples examples/lab

lab-up: install
	$(BIN)/faultline lab up

lab-down: venv
	$(BIN)/faultline lab down

clean:
	rm -rf $(VENV) build .lab .mypy_cache .ruff_cache .pytest_cache
