# locksmith.ops: every entry point bootstraps what it needs (apt packages, .venv, collection path).
# `make demo` and `make test` are the two commands; the rest are shortcuts for one stage of `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/.build
COLLECTIONS := $(BUILD)/collections
# ansible-test downloads a pip bootstrap script for this pip version; we feed it offline.
ANSIBLE_TEST_PIP := 24.2
# Coverage floor for plugins/; enforced once a module exists (issue 3).
COV_MIN ?= 80
PYTEST_ARGS ?=

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
export CONTAINERS_CONF := $(CURDIR)/molecule/containers.conf
export ANSIBLE_FORCE_COLOR := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PATH := $(BIN):/usr/lib/postgresql/15/bin:$(PATH)

APT_PACKAGES := $(shell sed -e 's/\#.*//' requirements/apt.txt)
HAVE_MODULES := $(wildcard plugins/modules/*.py)

.PHONY: help demo demo-check demo-clean test lint docs sanity unit integration molecule changelog-lint bootstrap apt venv collection image clean

help:
	@echo "make demo        run the embedded default site and print the posture report"
	@echo "make test        everything CI checks (lint, sanity, unit, integration, molecule)"
	@echo "make lint | sanity | unit | integration | molecule | changelog-lint"
	@echo "make docs        regenerate docs/reference/ (one page per module, lookup, filter and test)"
	@echo "make demo-check  site.yml --check --diff on the demo site: fails unless 0 changes are predicted"
	@echo "make demo-clean  remove everything the demo created"

# ---- bootstrap -------------------------------------------------------------------------------
bootstrap: apt venv collection

$(BUILD)/apt.stamp: requirements/apt.txt
	@mkdir -p $(BUILD)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq || exit 1; \
	  held=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\n# make bootstrap: test tools install without starting their services\nexit 101\n' | \
	      $$SUDO tee /usr/sbin/policy-rc.d >/dev/null && $$SUDO chmod 755 /usr/sbin/policy-rc.d && held=1; fi; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  status=$$?; [ -z "$$held" ] || $$SUDO rm -f /usr/sbin/policy-rc.d; [ $$status = 0 ] || exit $$status; \
	fi
	@touch $@

apt: $(BUILD)/apt.stamp

$(VENV)/.stamp: requirements/dev.txt requirements/constraints.txt | $(BUILD)/apt.stamp
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "venv: installing requirements/dev.txt (pinned by requirements/constraints.txt)"
	@$(BIN)/pip install -q -r requirements/dev.txt -c requirements/constraints.txt 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@touch $@

venv: $(VENV)/.stamp

# The collection is used in place: ansible finds it through this symlink, so edits need no rebuild.
collection: $(COLLECTIONS)/ansible_collections/locksmith/ops
$(COLLECTIONS)/ansible_collections/locksmith/ops:
	@mkdir -p $(COLLECTIONS)/ansible_collections/locksmith
	@ln -sfn $(CURDIR) $@

image: bootstrap
	@molecule/build-image.sh

# ---- checks ----------------------------------------------------------------------------------
test: bootstrap ee
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory changelog-lint
	@$(MAKE) --no-print-directory sanity
	@$(MAKE) --no-print-directory pytest-all
	@$(MAKE) --no-print-directory molecule

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -q -c pyproject.toml -r plugins
	$(BIN)/ansible-lint --profile production
	$(BIN)/python scripts/role_readme.py --check $(patsubst %/meta/argument_specs.yml,%,$(wildcard roles/*/meta/argument_specs.yml))
	$(BIN)/python scripts/alert_table.py --check
	$(BIN)/python scripts/plugin_docs.py --check

# docs/reference/: one page per module, lookup, filter and test, generated from the plugins' documentation.
docs: bootstrap
	$(BIN)/python scripts/plugin_docs.py

changelog-lint: bootstrap
	$(BIN)/antsibull-changelog lint

# execution-environment.yml: build the collection, `ansible-builder create` into .build/ee, check the context.
ee: bootstrap
	$(BIN)/python scripts/ee.py

# ansible-test wants the collection under .../ansible_collections/<ns>/<name>, and skips every path with
# a hidden component (such as .build), so sanity runs on a copy of the tracked files in a fresh temp dir.
sanity: bootstrap
	@mkdir -p ~/.ansible/test/cache
	@cd ~/.ansible/test/cache && { test -f pip-$(ANSIBLE_TEST_PIP)-py3-none-any.whl || \
	  $(BIN)/pip download -q --no-deps --only-binary=:all: pip==$(ANSIBLE_TEST_PIP) -d . 2>&1 | { grep -v 'is ignored' || true; }; }
	@sed 's/@PIP_VERSION@/$(ANSIBLE_TEST_PIP)/' scripts/ansible-test-get-pip.py > ~/.ansible/test/cache/get_pip_$(subst .,_,$(ANSIBLE_TEST_PIP)).py
	@tmp=$$(mktemp -d /tmp/locksmith-sanity-XXXXXX); root=$$tmp/ansible_collections/locksmith/ops; \
	mkdir -p $$root; git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ $$root/; \
	cd $$root && $(BIN)/ansible-test sanity --local --python 3.11 --color no; status=$$?; rm -rf $$tmp; exit $$status

pytest-all: bootstrap
	$(BIN)/pytest tests/unit tests/integration $(COV_ARGS) $(PYTEST_ARGS)

unit: bootstrap
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: bootstrap
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

COV_ARGS := --cov=plugins --cov-report=term-missing:skip-covered --cov-report=xml:$(BUILD)/coverage.xml
ifneq ($(HAVE_MODULES),)
COV_ARGS += --cov-fail-under=$(COV_MIN)
endif

# Every molecule/<scenario>/molecule.yml is one role scenario on the shared podman base. They share
# nothing on the host, so MOLECULE_JOBS of them run at a time (logs in .build/molecule/); any failure fails.
SCENARIOS := $(notdir $(patsubst %/,%,$(dir $(wildcard molecule/*/molecule.yml))))
MOLECULE_JOBS ?= 2
molecule: bootstrap
	@if [ -z "$(SCENARIOS)" ]; then echo "molecule: no scenarios"; exit 0; fi; \
	molecule/build-image.sh && \
	$(BIN)/python scripts/molecule_run.py --jobs $(MOLECULE_JOBS) $(SCENARIOS)

# ---- demo ------------------------------------------------------------------------------------
# The embedded site on podman hosts: site.yml, the proofs, the posture report (scripts/demo.py).
demo: bootstrap
	$(BIN)/python scripts/demo.py up

demo-check: bootstrap
	$(BIN)/python scripts/demo.py check

demo-clean: bootstrap
	$(BIN)/python scripts/demo.py clean

clean:
	rm -rf $(BUILD) .pytest_cache .ruff_cache .coverage
