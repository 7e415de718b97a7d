# Two commands for a fresh machine with Python 3.11:
#   make demo   set up, synthesize the embedded data, train the per-TF models (default recipe), print results
#   make test   set up and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_TFS ?= ARID3 ATF2 BACH1 CTCF ELK1 GABPA MAX REST SRF ZNF24
DEMO_STEPS ?= 600
DEMO_OUT ?= runs/demo
DEMO_DATA ?= data_synth

.PHONY: setup demo sweep-demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[tf,test]'
	touch $@

demo: setup
	$(BIN)/tfbind data synth --out $(DEMO_DATA) --tfs $(DEMO_TFS)
	@for tf in $(DEMO_TFS); do \
	  $(BIN)/tfbind train --tf $$tf --data $(DEMO_DATA) --steps $(DEMO_STEPS) \
	    --out $(DEMO_OUT)/$$tf --quiet > /dev/null && echo "trained $$tf -> $(DEMO_OUT)/$$tf" || exit 1; \
	done
	$(BIN)/tfbind sanity --run $(DEMO_OUT)/CTCF
	$(BIN)/tfbind report $(DEMO_OUT)

# The per-TF sweep on a two-node Ray cluster on this machine (synthetic data, short runs).
SWEEP_STEPS ?= 200
sweep-demo: setup
	bash cluster/local.sh up
	$(BIN)/tfbind sweep jobs/per_tf.yaml --out runs/sweep_demo --address 127.0.0.2:6380 --data synthetic \
	  --set train.steps=$(SWEEP_STEPS) || (bash cluster/local.sh down; exit 1)
	bash cluster/local.sh down

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs $(DEMO_DATA)
