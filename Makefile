# The two commands of the README:
#   make demo   set up, make the demo data, train + evaluate the flagship config on CPU
#   make test   set up, run the test suite
PYTHON := .venv/bin/python
DEMO_CONFIG ?= configs/augfpn_faster_rcnn_r50_demo.py

.PHONY: setup demo test

setup:
	bash tools/setup_env.sh

demo: setup
	bash tools/run_demo.sh $(DEMO_CONFIG)

test: setup
	$(PYTHON) -m pytest tests
