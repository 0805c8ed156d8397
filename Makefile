# aubench developer entry points. Everything runs inside .venv, created on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch and torchvision must be installed as a matching pair (see README, "Installation").
TORCH   ?= torch==2.14.1 torchvision==0.29.1
RUNS    ?= runs

.PHONY: setup test test-ray run leaderboard publish-default-run clean

$(BIN)/aubench: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## setup: create .venv and install aubench with its test tools
setup: $(BIN)/aubench

## test: set up, lint (ruff: errors, import order, style) and run the whole test suite (what CI runs)
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

## test-ray: install Hydra's Ray launcher into .venv (~400 MB) and run its end-to-end test on a local Ray instance
test-ray: setup
	$(BIN)/python -m pip install --quiet -e '.[ray]'
	AUBENCH_TEST_RAY=1 $(BIN)/python -m pytest tests/aubench/test_cli.py -k ray_launcher

## run: set up, generate SynthAU, run every default method on every default protocol, write the leaderboard
run: setup
	$(BIN)/aubench run --all --runs-dir $(RUNS)

## leaderboard: re-render leaderboard/LEADERBOARD.md from the committed records
leaderboard: setup
	$(BIN)/aubench leaderboard --runs-dir leaderboard/records --out leaderboard/LEADERBOARD.md --published all

## publish-default-run: copy the result records of $(RUNS) into leaderboard/records and re-render
publish-default-run: setup
	$(BIN)/aubench leaderboard --runs-dir $(RUNS) --export leaderboard/records
	$(MAKE) leaderboard

clean:
	rm -rf $(VENV) .cache .pytest_cache
