# One-command set-up. `make demo` and `make test` each create .venv and install into it when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The main job on built-in data: SLOGAN on its synthetic 8-Gaussian mixture. It runs the first 3000 iterations
# of the full 100000-iteration schedule (the mixture already separates), writing images, a GIF and TensorBoard
# logs to logs/synthetic/demo/. Running it again with a larger --stop_after (or none) continues the same run.
demo: $(STAMP)
	$(PY) slogan_synthetic.py --gpu -1 --stop_after 3000 --log_freq 500 --run_name demo

test: $(STAMP)
	$(PY) -m pytest -q

# Everything, including the tests marked slow.
test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean-venv:
	rm -rf $(VENV)
