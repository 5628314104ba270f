# Paddle Seg Zoo: `make demo` trains and evaluates Fast-SCNN on a generated dataset;
# `make test` runs the test suite. Both install what they need first.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
DEMO_ROOT ?= data/demo
DEMO_OUT ?= output/demo
DEMO_CONFIG ?= configs/demo/fast_scnn_demo_96x192_1k.yml
# Paddle's dygraph CPU kernels use one thread, so two data-parallel processes use both cores.
DEMO_PROCS ?= 2

.PHONY: install install-test demo test clean

install:
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .

install-test: install
	$(PIP) install -q -r requirements-test.txt
	$(PIP) install -q "paddle2onnx==2.1.0" onnxruntime

demo: install
	$(PYTHON) tools/make_demo_data.py --root $(DEMO_ROOT)
	rm -rf $(DEMO_OUT)
	$(PYTHON) -m paddle.distributed.launch --nproc_per_node $(DEMO_PROCS) --log_dir $(DEMO_OUT)/log \
		tools/train.py --config $(DEMO_CONFIG) --save_dir $(DEMO_OUT) --do_eval --use_vdl --num_workers 1 --device cpu
	$(PYTHON) tools/val.py --config $(DEMO_CONFIG) --model_path $(DEMO_OUT)/best_model/model.pdparams --device cpu

# every config at full size (train step, export, Paddle Inference parity) runs in two processes
test: install-test
	$(PYTHON) -m pytest tests -q -p no:cacheprovider -m "not slow" --durations=25 --ignore=tests/test_every_config.py
	$(PYTHON) -m pytest tests/test_every_config.py -q -p no:cacheprovider -n 2 --dist loadgroup --durations=15

clean:
	rm -rf output data/demo test_tipc/output
