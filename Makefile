# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv if missing, installs rbcray, runs the demo (local Ray, CPU, public data)
#   make test   -> creates .venv if missing, installs rbcray[test], runs ruff and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

.PHONY: demo test lint bench clean-venv

$(BIN)/.rbcray-installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

demo: $(BIN)/.rbcray-installed
	$(BIN)/rbcray demo --out $(DEMO_OUT)

test: $(BIN)/.rbcray-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(BIN)/.rbcray-installed
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
