# Two commands for a fresh machine with Python 3.11:
#   make demo   set up, synthesize the embedded data, train the 10 per-TF models as a Ray sweep, score a real
#               genome with them, explain one prediction, discover the motifs the CTCF model learned
#   make test   set up and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo
DEMO_DATA ?= data_synth
DEMO_STEPS ?= 300
DEMO_GENOME ?= ../shared/data/ecoli_genome/MG1655-K12.fasta.gz

.PHONY: setup setup-test demo sweep-demo test test-fast clean

# The demo needs the core install only; the tests add the [tf,test] extras (TensorFlow is 1.3 GB).
setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -e '.[tf,test]'
	touch $@

demo: setup
	$(BIN)/tfbind data synth --out $(DEMO_DATA)
	$(BIN)/tfbind sweep jobs/demo.yaml --out $(DEMO_OUT) --address local --data $(DEMO_DATA) \
	  --set train.steps=$(DEMO_STEPS) --cpus-per-job 1
	@if [ -f "$(DEMO_GENOME)" ]; then src="$(DEMO_GENOME)"; else \
	  echo "($(DEMO_GENOME) not found: scoring the synthetic CTCF test split instead)"; src="$(DEMO_DATA)/CTCF_test.parquet"; fi; \
	  rm -rf $(DEMO_OUT)/shards; $(BIN)/tfbind data shard "$$src" --out $(DEMO_OUT)/shards --rows-per-shard 4000
	$(BIN)/tfbind score --runs $(DEMO_OUT)/*-s42-*/ --input $(DEMO_OUT)/shards --out $(DEMO_OUT)/scores \
	  --outputs prob --address local --actors 1 --cpus-per-actor 1
	$(BIN)/tfbind explain --run "$$(ls -d $(DEMO_OUT)/CTCF-* | head -1)" --split valid --label 1 --index 0 \
	  --method ism --out $(DEMO_OUT)/explain --plots 1
	$(BIN)/tfbind motifs --run "$$(ls -d $(DEMO_OUT)/CTCF-* | head -1)" --method deeplift-shap --out $(DEMO_OUT)/motifs

# The per-TF sweep on a two-node Ray cluster on this machine (synthetic data, short runs).
SWEEP_STEPS ?= 200
sweep-demo: setup
	bash cluster/local.sh up
	$(BIN)/tfbind sweep jobs/per_tf.yaml --out runs/sweep_demo --address 127.0.0.2:6380 --data synthetic \
	  --set train.steps=$(SWEEP_STEPS) || (bash cluster/local.sh down; exit 1)
	bash cluster/local.sh down

# The suite runs in TEST_WORKERS processes (pytest-xdist; the tests on the session's Ray cluster stay in one)
# and lists its 30 slowest tests at the end.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup
test: setup-test
	$(PYTEST) --durations=30

# The edit loop: everything but the slow end-to-end runs (clusters, multi-process jobs, stress), 5.5 minutes here.
test-fast: setup-test
	$(PYTEST) -m "not slow"

clean:
	rm -rf $(VENV) runs $(DEMO_DATA)
