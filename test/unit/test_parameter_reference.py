"""docs/parameters.md, config/segment.yaml and the node's parameter specs agree, and the page tells the truth."""

from __future__ import annotations

import re
from pathlib import Path

from clipseg_ros.ros.node import parameters
from clipseg_ros.ros.node.parameter_reference import main, render
from clipseg_ros.ros.recordings.run_config import read_params_file

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "parameters.md"


def test_params_file_names_every_parameter_with_its_default():
    params = read_params_file(ROOT / "config" / "segment.yaml")
    assert sorted(set(params) - set(parameters.SPECS)) == [], "keys in segment.yaml without a spec"
    assert sorted(set(parameters.SPECS) - set(params)) == [], "specs missing from segment.yaml"
    for name, spec in parameters.SPECS.items():
        assert params[name] == spec.default, name
        assert parameters.validate(name, spec.default) is None, name


def test_the_page_is_the_one_generated_from_the_specs(capsys):
    assert main(["--check", "--page", str(PAGE)]) == 0, capsys.readouterr().err
    page = PAGE.read_text()
    for name, spec in parameters.SPECS.items():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {'no' if spec.read_only else 'yes'} |" in row, name


def test_check_names_the_parameters_whose_rows_differ(tmp_path, capsys):
    page = tmp_path / "parameters.md"
    page.write_text(render().replace("| `threshold` | double | `0.5` |", "| `threshold` | double | `0.4` |"))
    assert main(["--check", "--page", str(page)]) == 1
    assert "rows of threshold;" in capsys.readouterr().err
    page.write_text(render({k: v for k, v in parameters.SPECS.items() if k != "points.stride"}))
    assert main(["--check", "--page", str(page)]) == 1
    assert "rows of points.stride;" in capsys.readouterr().err
    page.write_text(render().replace("Node `clipseg`", "Node `segment`"))
    assert main(["--check", "--page", str(page)]) == 1
    assert "the text around the table" in capsys.readouterr().err
    assert main(["--check", "--page", str(tmp_path / "missing.md")]) == 1
    assert "cannot be read" in capsys.readouterr().err
    assert main(["--page", str(page)]) == 0
    assert main(["--check", "--page", str(page)]) == 0


_NUMBER = r"-?\d+(?:\.\d+)?"
_INTERVAL = re.compile(rf"([\[(])({_NUMBER}), ({_NUMBER})([\])])")
_SPAN = re.compile(rf"({_NUMBER})\.\.({_NUMBER})")
_AT_LEAST = re.compile(rf">= ({_NUMBER})")


def _bounds(allowed: str) -> tuple[float, bool, float | None, bool] | None:
    """(low, low included, high or None, high included) of a numeric `allowed` text, None if it is not one."""
    if m := _INTERVAL.fullmatch(allowed):
        return float(m[2]), m[1] == "[", float(m[3]), m[4] == "]"
    if m := _SPAN.fullmatch(allowed):
        return float(m[1]), True, float(m[2]), True
    if m := _AT_LEAST.fullmatch(allowed):
        return float(m[1]), True, None, False
    return None


def test_the_allowed_column_is_what_the_node_accepts():
    """Each range or choice the page prints is the check's own boundary, not a description that can drift."""
    verified = []
    for name, spec in parameters.SPECS.items():
        if spec.check is None:
            continue
        allowed = spec.check.allowed
        if spec.kind in ("int", "float"):
            bounds = _bounds(allowed)
            assert bounds is not None, f"{name}: allowed {allowed!r} is no range the page's readers can check"
            low, low_in, high, high_in = bounds
            step = 1 if spec.kind == "int" else 1e-6
            kind = int if spec.kind == "int" else float
            assert (parameters.validate(name, kind(low)) is None) == low_in, (name, low)
            assert parameters.validate(name, kind(low - step)) is not None, (name, low - step)
            if high is not None:
                assert (parameters.validate(name, kind(high)) is None) == high_in, (name, high)
                assert parameters.validate(name, kind(high + step)) is not None, (name, high + step)
                assert parameters.validate(name, kind((low + high) / 2)) is None, name
            verified.append(name)
        elif spec.kind == "str" and re.fullmatch(r"\w+(, \w+)+", allowed):
            for option in allowed.split(", "):
                assert parameters.validate(name, option) is None, (name, option)
            assert "one of" in parameters.validate(name, "nonsense"), name
            verified.append(name)
    numeric = [name for name, spec in parameters.SPECS.items() if spec.check and spec.kind in ("int", "float")]
    choices = ["precision", "backend", "int8", "image_transport", "qos.input_reliability", "qos.output_reliability"]
    assert sorted(verified) == sorted(numeric + choices)
