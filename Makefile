# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it, exactly the
# versions in requirements.lock (the set the tests passed with); `make lock` refreshes that file from
# pyproject.toml, and `make latest` tries the newest versions pyproject.toml allows in a venv of their own.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TORCH  := torch==2.13.0
LOCK   := requirements.lock

.PHONY: demo test lint lock latest clean

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
define install
	test -x $(1)/bin/python || python3 -m venv $(1)
	$(1)/bin/python -m pip install -q $(2) pip
	$(1)/bin/python -m pip install -q $(TORCH)
	$(1)/bin/python -m pip install -q $(2) -e '.[dev]'
endef

$(STAMP): pyproject.toml $(LOCK)
	$(call install,$(VENV),-c $(LOCK))
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

# The newest versions pyproject.toml allows, resolved in a venv of their own, written down with pip's own
# freeze (pip and setuptools included); then the tests' venv is rebuilt from it.
lock:
	rm -rf .venv-lock
	$(call install,.venv-lock,--upgrade)
	(echo "# Every package of a test install, at the version the tests passed with. Made by \`make lock\` from"; \
	 echo "# pyproject.toml ($(TORCH) first, then .[dev]); \`make\` installs with \`pip install -c\` this file."; \
	 .venv-lock/bin/python -m pip freeze --all --exclude-editable) > $(LOCK)
	rm -rf .venv-lock $(STAMP)

# Whether the newest allowed versions pass too, without touching the lock or .venv.
latest:
	$(call install,.venv-latest,--upgrade)
	.venv-latest/bin/ruff check src tests bench && .venv-latest/bin/mypy && .venv-latest/bin/python -m pytest

clean:
	rm -rf $(VENV) .venv-lock .venv-latest runs .pytest_cache .ruff_cache
