# The two commands of the README: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8080
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check nginx-demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
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
