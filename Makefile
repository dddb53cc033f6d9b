# Everything a fresh machine needs comes from this repository's own files:
#   make demo   the main job: the node on sample images, prompts over topic and service, overlays written
#   make test   the whole suite (builds the environment first); by tier: make test-fast (unit: no ROS process,
#               no network, about a minute), make test-ros (nodes in their own processes), make test-e2e
# `make setup` is idempotent; a second run only re-installs what changed.

VENV        ?= .venv
PY          := $(VENV)/bin/python
BUILD_DIR   ?= build/venv
REQS        := requirements/runtime.txt requirements/onnx.txt requirements/ros.txt requirements/recordings.txt requirements/test.txt requirements/ray.txt
NODEPS      := requirements/test-nodeps.txt
ROS_ENV     := AMENT_PREFIX_PATH=$(abspath $(VENV)) CMAKE_PREFIX_PATH=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH
DEMO_ARGS   ?= --fallback-synthetic

.PHONY: setup deps interfaces test test-fast test-ros test-e2e lint demo bench docs clean

setup: interfaces

$(PY):
	python3 -m venv $(VENV)

# Pinned by requirements/constraints.txt; re-run only when a requirements file changes.
$(VENV)/.deps: $(REQS) $(NODEPS) requirements/constraints.txt | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check $(foreach r,$(REQS),-r $(r)) -c requirements/constraints.txt
	# Packages whose declared dependencies would break this environment (each file says why): without them.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r $(NODEPS) -c requirements/constraints.txt
	$(PY) scripts/fix_ros_wheel_cmake.py $(VENV)
	touch $@

deps: $(VENV)/.deps

# The package itself, built by CMake as colcon would, installed into the venv prefix with
# symlinks (AMENT_CMAKE_SYMLINK_INSTALL, what `colcon build --symlink-install` sets) so edits
# to the Python sources need no reinstall.
interfaces: deps
	@test -f $(BUILD_DIR)/CMakeCache.txt || $(ROS_ENV) cmake -S . -B $(BUILD_DIR) -DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) \
		-DPython3_EXECUTABLE=$(abspath $(PY)) -DBUILD_TESTING=OFF -DAMENT_CMAKE_SYMLINK_INSTALL=ON > /dev/null
	@$(ROS_ENV) cmake --build $(BUILD_DIR) -j2 > /dev/null
	@$(ROS_ENV) cmake --install $(BUILD_DIR) > /dev/null

# The quick tier first: a broken engine shows in a minute, not after the nodes and the demo.
test: setup
	$(VENV)/bin/pytest -q test/unit test/ros test/e2e

test-fast: setup
	$(VENV)/bin/pytest -q test/unit

test-ros: setup
	$(VENV)/bin/pytest -q test/ros

test-e2e: setup
	$(VENV)/bin/pytest -q test/e2e

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	$(PY) -P -m clipseg_ros.ros.demo $(DEMO_ARGS)

bench: setup
	$(PY) bench/engine_vs_transformers.py
	$(PY) bench/node_latency.py
	$(PY) bench/postprocess.py
	$(PY) bench/multi_camera.py
	$(PY) bench/runtimes.py
	$(PY) bench/attack_node.py

# docs/parameters.md from the node's parameter specs (clipseg_ros/ros/node/parameters.py).
docs: setup
	$(PY) -P -m clipseg_ros.ros.node.parameter_reference

clean:
	rm -rf build $(VENV)
