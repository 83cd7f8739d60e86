# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TORCH  := torch==2.13.0

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bertlstm train --train examples/data/train.csv --dev examples/data/dev.csv \
		--test examples/data/test.csv --mode frozen --epochs 5 --output runs/demo
	$(VENV)/bin/bertlstm predict --model runs/demo \
		--text "The striker scored twice in the second half" \
		--text "My laptop battery drains in two hours since the update" \
		--text "This ramen broth is rich, smoky and perfectly salted" \
		--text "We took the night train from Vienna to Venice"
	$(VENV)/bin/bertlstm evaluate --model runs/demo --data examples/data/test.csv

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
