"""The runtime parameters (precision, backend, int8, onnx_file) as a user sets them: checked like every other
parameter, and passed by the launch file's arguments as the node reads them."""

from __future__ import annotations

import pytest
import rclpy.parameter
from rclpy.parameter import Parameter

from clipseg_ros.engine import limits
from clipseg_ros.ros import launch_args
from clipseg_ros.ros.node import parameters


def test_runtime_parameters_are_checked_against_the_engines_values():
    assert parameters.SPECS["precision"].default == "auto"
    for name, good, bad in (("precision", limits.PRECISIONS, "fp64"), ("backend", limits.BACKENDS, "openvino"),
                            ("int8", limits.INT8_AT_LOAD, "static")):
        assert all(parameters.validate(name, value) is None for value in good), name
        assert f"must be one of {', '.join(good)}" in parameters.validate(name, bad), name
    assert parameters.validate("onnx_file", "") is None and parameters.validate("onnx_file", "/x/model.onnx") is None
    assert "must be a string" in parameters.validate("onnx_file", 3)


def test_launch_arguments_set_the_runtime_parameters(tmp_path):
    if not hasattr(rclpy.parameter, "parameter_dict_from_yaml_file"):
        pytest.skip("rclpy before Jazzy has no params-file parser")
    overrides = launch_args.parameter_overrides("", "", "true", "", precision="bf16", backend="onnxruntime",
                                                int8="none", onnx_file="/x/model_int8_static.onnx")
    path = tmp_path / "overrides.yaml"
    path.write_text(launch_args.parameters_yaml(overrides))
    read = {name: Parameter.from_parameter_msg(msg).value
            for name, msg in rclpy.parameter.parameter_dict_from_yaml_file(str(path), use_wildcard=True).items()}
    assert read == {"autostart": True, "precision": "bf16", "backend": "onnxruntime", "int8": "none",
                    "onnx_file": "/x/model_int8_static.onnx"}
    assert all(parameters.validate(name, value) is None for name, value in read.items())
    # Empty arguments (the launch file's defaults) leave the params file's values standing.
    empty = dict.fromkeys(launch_args.RUNTIME_ARGUMENTS, "")
    assert launch_args.parameter_overrides("", "", "true", "", **empty) == {"autostart": True}
    with pytest.raises(ValueError, match="no launch argument sets \\['threshold'\\]"):
        launch_args.parameter_overrides("", "", "true", "", threshold="0.3")
