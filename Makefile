# casella: `make serve` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv serve test bench imaptest fuzz clean
FUZZ_SECONDS ?= 60

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: venv
	$(BIN)/casella serve --demo

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

# Dovecot's imaptest: the scripted suite and stress runs (10 and 50 clients) against a casella
# it starts, and against a private Dovecot when one is installed. Skips when imaptest is not.
imaptest: venv
	$(BIN)/python -m bench.imaptest $(IMAPTEST_ARGS)

# Each atheris target in fuzz/ for FUZZ_SECONDS (FUZZ_TARGETS=imap to pick); crashes land in
# var/fuzz/artifacts/.
fuzz: venv
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/python -m pip install --quiet atheris
	$(BIN)/python fuzz/run.py $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(VENV) var build *.egg-info
