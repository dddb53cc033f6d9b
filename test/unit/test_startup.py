"""The checks of configure without ROS: every bad parameter named at once with exit code 2, weights that cannot
be used with exit code 3 and the hint, good ones loaded."""

from __future__ import annotations

import pytest

from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.startup import (
    EXIT_BAD_PARAMETERS,
    EXIT_WEIGHTS_UNAVAILABLE,
    StartupError,
    checked_settings,
    load_segmenter,
)

# As the node's parameters are when nothing is given: unset lists read as None.
GIVEN = {name: (None if spec.default == [] else spec.default) for name, spec in parameters.SPECS.items()}


def given(**changes):
    values = {**GIVEN, **{name.replace("__", "."): value for name, value in changes.items()}}
    return values.__getitem__


def test_the_defaults_pass_and_integers_are_taken_for_floats():
    settings = checked_settings(given(max_rate_hz=5, prompts=["cup"]))
    assert settings.max_rate_hz == 5.0 and isinstance(settings.max_rate_hz, float)
    assert settings.prompts == ("cup",)


def test_every_invalid_parameter_is_named_at_once_with_exit_code_2():
    with pytest.raises(StartupError) as failed:
        checked_settings(given(threshold="high", precision="fp64", input_size=[352.5, 352.0]))
    assert failed.value.exit_code == EXIT_BAD_PARAMETERS
    message = str(failed.value)
    assert message.startswith("invalid parameters: ")
    for says in ("threshold: must be a number", "precision", "input_size: must be a list of integers"):
        assert says in message, message


def test_values_that_do_not_fit_together_are_exit_code_2():
    with pytest.raises(StartupError, match="invalid parameters: .*depth") as failed:
        checked_settings(given(depth__min_m=3.0, depth__max_m=1.0))
    assert failed.value.exit_code == EXIT_BAD_PARAMETERS


def test_weights_that_cannot_be_used_are_exit_code_3_with_the_hint(tmp_path):
    value = dict(GIVEN, weights=str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(StartupError) as failed:
        load_segmenter(value.__getitem__, lambda line: None)
    assert failed.value.exit_code == EXIT_WEIGHTS_UNAVAILABLE
    assert "weights:=" in str(failed.value) and "config.json" in str(failed.value)


def test_what_the_engine_refuses_is_exit_code_2(tiny_checkpoint):
    value = dict(GIVEN, weights=str(tiny_checkpoint), device="cpu", input_size=[64, 60])
    with pytest.raises(StartupError) as failed:
        load_segmenter(value.__getitem__, lambda line: None)
    assert failed.value.exit_code == EXIT_BAD_PARAMETERS and "invalid parameters" in str(failed.value)


def test_good_weights_are_loaded_and_the_load_is_logged(tiny_checkpoint):
    logged: list[str] = []
    value = dict(GIVEN, weights=str(tiny_checkpoint), device="cpu", input_size=[64, 64])
    segmenter = load_segmenter(value.__getitem__, logged.append)
    try:
        assert logged == [f"loading weights {str(tiny_checkpoint)!r}"]
        assert segmenter.input_size == (64, 64) and segmenter.model_id == str(tiny_checkpoint)
    finally:
        segmenter.release()
