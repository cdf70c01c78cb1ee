# The two commands of the README. Each creates ./.venv on first use (with a
# Python that has tkinter, which Scipion imports), installs the package with its
# test extras, and runs. See scripts/ensure-venv.sh.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo gui test install clean

install:
	VENV=$(VENV) bash scripts/ensure-venv.sh

demo: install
	$(BIN)/xmipp-qc demo $(DEMO_ARGS)

gui: install  # Scipion's project window on the demo project (built first if missing)
	$(BIN)/python -m xmipp_qc.demo_gui $(GUI_ARGS)

test: install
	VENV=$(VENV) bash scripts/run-tests.sh $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
