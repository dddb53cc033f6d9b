"""The demo's model trained on synthetic shapes: trained once and cached by what determines it, with PhraseCut+
sampling that can hold text-alone samples for a CLIP whose text and image embeddings are unrelated."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from clipseg_ros.engine.checkpoints import load_model
from clipseg_ros.train.dataset_opener import open_source
from clipseg_ros.train.phrasecut_plus import PhraseCutPlus, SamplingOptions
from clipseg_ros.train.report import REPORT_JSON
from clipseg_ros.train.shapes_model import EVAL_DIR, ShapesRecipe, cache_key, shapes_model
from clipseg_ros.train.synthetic import generate_synthetic, synthetic_scenes

QUICK = ShapesRecipe(steps=3, batch_size=2, images=10, size=64)


def test_model_is_trained_once_then_loaded_from_the_cache(tmp_path):
    first = shapes_model(tmp_path, QUICK, progress=False)
    assert first.trained_now
    assert load_model(str(first.directory)).config == QUICK.model_config()
    report = json.loads((first.directory / EVAL_DIR / REPORT_JSON).read_text())
    assert report["metrics"]["threshold"] == 0.3 and "IoU_FG" in report["one_shot"]
    assert report["training"]["recipe"]["steps"] == QUICK.steps
    assert first.curves.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.directory.name]  # no partial run left behind
    assert not (first.directory / "data").exists() and not (first.directory / "training_state.pt").exists()

    again = shapes_model(tmp_path, QUICK, progress=False)
    assert not again.trained_now and again.directory == first.directory and again.report == first.report


def test_cache_key_follows_the_recipe():
    assert cache_key(QUICK) == cache_key(replace(QUICK))
    changes = ({"steps": 4}, {"seed": 1}, {"lr": 1e-3}, {"size": 96})
    keys = {cache_key(QUICK), *(cache_key(replace(QUICK, **change)) for change in changes)}
    assert len(keys) == 1 + len(changes)
    with pytest.raises(ValueError, match="at least 1 step"):
        ShapesRecipe(steps=0)


def test_text_only_rate_conditions_samples_on_text_alone(tmp_path):
    root = generate_synthetic(tmp_path / "shapes", images=20, size=32, seed=0, positional=False)
    source = open_source(root, "train")
    mixed = PhraseCutPlus(source, SamplingOptions(image_size=32, negative_rate=0.0))
    text_alone = PhraseCutPlus(source, SamplingOptions(image_size=32, negative_rate=0.0, text_only_rate=1.0))
    assert any(mixed[i]["text_weight"] < 1.0 for i in range(20))
    assert all(text_alone[i]["text_weight"] == 1.0 and not text_alone[i]["support"].any() for i in range(20))
    with pytest.raises(ValueError, match="text_only_rate"):
        SamplingOptions(text_only_rate=1.5)


def test_scenes_are_reproducible_at_any_size():
    scenes, again = synthetic_scenes(2, 384, seed=5), synthetic_scenes(2, 384, seed=5)
    for (image, shapes), (image_again, shapes_again) in zip(scenes, again, strict=True):
        assert image.shape == (384, 384, 3) and np.array_equal(image, image_again)
        assert [p for p, _ in shapes] == [p for p, _ in shapes_again] and len(shapes) >= 2
