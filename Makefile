# Everything a fresh machine needs comes from this repository's own files:
#   make demo   the main job: the node on sample images, prompts over topic and service, overlays written
#   make test   the whole suite (builds the environment first)
# `make setup` is idempotent; a second run only re-installs what changed.

VENV        ?= .venv
PY          := $(VENV)/bin/python
BUILD_DIR   ?= build/venv
REQS        := requirements/runtime.txt requirements/onnx.txt requirements/ros.txt requirements/test.txt
ROS_ENV     := AMENT_PREFIX_PATH=$(abspath $(VENV)) CMAKE_PREFIX_PATH=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH
DEMO_ARGS   ?= --fallback-synthetic

.PHONY: setup deps interfaces test lint demo bench clean

setup: interfaces

$(PY):
	python3 -m venv $(VENV)

# Pinned by requirements/constraints.txt; re-run only when a requirements file changes.
$(VENV)/.deps: $(REQS) requirements/constraints.txt | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check $(foreach r,$(REQS),-r $(r)) -c requirements/constraints.txt
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

test: setup
	$(VENV)/bin/pytest -q test

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

clean:
	rm -rf build $(VENV)
