# The two commands of the README: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8080
STAMP := $(VENV)/.installed-stamp
# `make demo` needs only what the sidecar needs to run: not the test tools (browsers, linters).
RUNTIME_STAMP := $(VENV)/.runtime-stamp

.PHONY: demo test check nginx-demo clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed")'
	@echo "==> creating a virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "==> installing totp-sidecar and its runtime dependencies into $(VENV) (a minute the first time)"
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e .
	touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "==> installing totp-sidecar with the test tools into $(VENV)"
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP) $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	@echo "==> starting the demo on http://127.0.0.1:$(PORT)/ (Ctrl+C stops it)"
	$(VENV)/bin/totp-sidecar demo --port $(PORT)

test: $(STAMP)
	bash scripts/system-deps.sh
	$(VENV)/bin/python -m pytest -q

# Lint and types: ruff (with import order) on everything, mypy --strict on sidecar/ and tests/.
check: $(STAMP)
	$(VENV)/bin/ruff check sidecar tests bench
	$(VENV)/bin/mypy sidecar tests

nginx-demo: $(STAMP)
	bash deploy/nginx/run-demo.sh

clean:
	rm -rf $(VENV) .pytest_cache
