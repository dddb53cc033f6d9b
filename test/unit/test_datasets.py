"""Dataset readers (PhraseCut, folder format), the synthetic generator and PhraseCut+ sampling."""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest
import torch

from clipseg_ros.train.dataset_opener import open_source
from clipseg_ros.train.folder_dataset import FolderSource
from clipseg_ros.train.phrasecut import PhraseCutSource
from clipseg_ros.train.phrasecut_plus import MAX_TEXT_WEIGHT, PROMPT_TEMPLATES, PhraseCutPlus, SamplingOptions
from clipseg_ros.train.synthetic import COLOURS, generate_synthetic


def _task(task_id, image_id, phrase, polygons):
    """One entry of refer_<split>.json as the VGPhraseCut release writes it."""
    boxes = []
    for instance in polygons:
        xs = [x for poly in instance for x, _ in poly]
        ys = [y for poly in instance for _, y in poly]
        boxes.append([min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1])
    name = phrase.split()[-1]
    return {
        "task_id": task_id,
        "image_id": image_id,
        "ann_ids": list(range(len(polygons))),
        "instance_boxes": boxes,
        "Polygons": polygons,
        "phrase": phrase,
        "phrase_structure": {"name": name, "attributes": phrase.split()[:-1], "relation_ids": [],
                             "relation_descriptions": [], "type": "attribute"},
    }


@pytest.fixture
def phrasecut_dir(tmp_path):
    root = tmp_path / "VGPhraseCut_v0"
    (root / "images").mkdir(parents=True)
    # image 1 as annotated (20x20); image 2 stored at twice the size its annotations were drawn on
    cv2.imwrite(str(root / "images" / "1.jpg"), np.full((20, 20, 3), 128, np.uint8))
    cv2.imwrite(str(root / "images" / "2.jpg"), np.full((40, 40, 3), 90, np.uint8))
    tasks = [
        # two instances, one polygon each; a degenerate 2-point polygon encloses nothing
        _task("1__0", 1, "red cup", [[[[2, 2], [9, 2], [9, 5], [2, 5]]],
                                     [[[12, 12], [15, 12], [15, 15], [12, 15]], [[0, 19], [1, 19]]]]),
        _task("1__1", 1, "table", [[[[0, 10], [19, 10], [19, 19], [0, 19]]]]),
        _task("2__0", 2, "red cup", [[[[0, 0], [4, 0], [4, 4], [0, 4]]]]),
    ]
    (root / "refer_val.json").write_text(json.dumps(tasks))
    (root / "refvg_miniv.json").write_text(json.dumps([_task("1__2", 1, "wall", [[[[0, 0], [19, 0], [19, 3]]]])]))
    images = [
        {"image_id": 1, "width": 20, "height": 20, "split": "val", "url": "", "coco_id": None, "flickr_id": None},
        {"image_id": 2, "width": 20, "height": 20, "split": "val", "url": "", "coco_id": None, "flickr_id": None},
    ]
    (root / "image_data_split.json").write_text(json.dumps(images))
    return root


def test_phrasecut_reader_draws_the_union_of_instance_polygons(phrasecut_dir):
    source = open_source(phrasecut_dir, "val")
    assert isinstance(source, PhraseCutSource)
    assert [a.phrase for a in source] == ["red cup", "table", "red cup"]
    image, mask = source.load(0)
    assert image.shape == (20, 20, 3) and image.dtype == np.uint8
    expected = np.zeros((20, 20), bool)
    expected[2:6, 2:10] = True  # polygon corners are inside (x 2..9, y 2..5)
    expected[12:16, 12:16] = True
    np.testing.assert_array_equal(mask, expected)


def test_sources_pickle_for_spawned_loader_workers(phrasecut_dir, tmp_path):
    _write_folder(tmp_path / "folder", "csv")
    for source in (PhraseCutSource(phrasecut_dir, "val"), FolderSource(tmp_path / "folder")):
        copy = pickle.loads(pickle.dumps(source))
        np.testing.assert_array_equal(copy.load(0)[1], source.load(0)[1])


def test_phrasecut_polygons_follow_a_resized_image(phrasecut_dir):
    image, mask = PhraseCutSource(phrasecut_dir, "val").load(2)
    assert image.shape[:2] == mask.shape == (40, 40)
    expected = np.zeros((40, 40), bool)
    expected[0:9, 0:9] = True  # the 0..4 square drawn at twice the scale
    np.testing.assert_array_equal(mask, expected)


def test_phrasecut_joined_splits_and_the_refvg_file_name(phrasecut_dir):
    source = PhraseCutSource(phrasecut_dir, "val_miniv")
    assert len(source) == 4
    assert source.phrases_by_image[phrasecut_dir / "images" / "1.jpg"] == {"red cup", "table", "wall"}
    with pytest.raises(FileNotFoundError, match="refer_train.json"):
        PhraseCutSource(phrasecut_dir, "train")


def test_phrasecut_task_without_polygons_is_reported(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "refer_val.json").write_text(json.dumps([{"task_id": "9__0", "image_id": 9, "phrase": "x"}]))
    with pytest.raises(ValueError, match="9__0"):
        PhraseCutSource(tmp_path, "val")


def _write_folder(root, fmt):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 255
    cv2.imwrite(str(root / "masks" / "a_top.png"), mask)
    rows = [
        {"image": "images/a.png", "mask": "masks/a_top.png", "phrase": "top half", "split": "train"},
        {"image": "images/a.png", "mask": "masks/a_top.png", "phrase": "upper part", "split": "test"},
    ]
    if fmt == "jsonl":
        (root / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        lines = ["image,mask,phrase,split"] + [",".join(r.values()) for r in rows]
        (root / "annotations.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_folder_reader(tmp_path, fmt):
    _write_folder(tmp_path, fmt)
    source = open_source(tmp_path, "train")
    assert isinstance(source, FolderSource)
    assert [a.phrase for a in source] == ["top half"]
    image, mask = source.load(0)
    assert image.shape == (8, 8, 3) and mask.sum() == 32 and mask[:4].all()
    assert len(open_source(tmp_path, None)) == 2  # no split: every line


def test_folder_reader_names_a_missing_field(tmp_path):
    (tmp_path / "annotations.jsonl").write_text(json.dumps({"image": "a.png", "phrase": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"annotations.jsonl:1: missing mask"):
        FolderSource(tmp_path)


def test_unknown_directory_is_explained(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        open_source(tmp_path)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), images=20, size=64, seed=0)


def test_synthetic_masks_cover_shapes_of_the_named_colour(synthetic_dir):
    train, test = open_source(synthetic_dir, "train"), open_source(synthetic_dir, "test")
    assert len(train.phrases_by_image) == 16 and len(test.phrases_by_image) == 4
    assert any(p.endswith(("on the left", "on the right")) for p in train.phrases)
    for index in range(len(train)):
        image, mask = train.load(index)
        assert mask.any()
        colour = train[index].phrase.split()[0]
        mean = image[mask].mean(axis=0)
        assert np.abs(mean - COLOURS[colour]).max() < 40, (train[index].phrase, mean)


def _sampler(source, **options):
    return PhraseCutPlus(source, SamplingOptions(image_size=64, **options))


def test_sample_layout_and_determinism(synthetic_dir):
    data = _sampler(open_source(synthetic_dir, "train"), negative_rate=0.0)
    sample = data[7]
    assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
    assert sample["target"].shape == (64, 64) and set(sample["target"].unique().tolist()) <= {0.0, 1.0}
    assert sample["support"].shape == (3, 64, 64)
    assert any(t.format(sample["phrase"]) == sample["text"] for t in PROMPT_TEMPLATES)
    again = data[7]
    assert again["text"] == sample["text"] and torch.equal(again["support"], sample["support"])
    assert again["text_weight"] == sample["text_weight"]


def test_support_comes_from_another_image_with_the_same_phrase(synthetic_dir):
    source = open_source(synthetic_dir, "train")
    data = _sampler(source, negative_rate=0.0)
    for item in range(30):
        sample = data[item]
        shared = len({source[i].image_path for i in source.indices_by_phrase[sample["phrase"]]}) > 1
        if shared:
            assert 0.0 <= sample["text_weight"] <= MAX_TEXT_WEIGHT
            assert sample["support"].abs().sum() > 0
        else:  # the phrase has one image: text only
            assert sample["text_weight"] == 1.0 and not sample["support"].any()


def test_text_only_when_the_phrase_has_one_image(phrasecut_dir):
    data = _sampler(PhraseCutSource(phrasecut_dir, "val"), negative_rate=0.0)
    for item in range(20):
        sample = data[item]
        if sample["phrase"] == "table":
            assert sample["text_weight"] == 1.0 and not sample["support"].any()
        else:  # "red cup" is on both images: the support is the other one's cup
            assert sample["text_weight"] <= MAX_TEXT_WEIGHT and sample["support"].any()


def test_negatives_name_an_absent_phrase_and_have_empty_targets(synthetic_dir):
    source = open_source(synthetic_dir, "train")
    data = _sampler(source, negative_rate=0.99, visual=False)
    negatives = 0
    for item in range(20):
        sample = data[item]
        present = source.phrases_by_image[source[sample["index"]].image_path]
        if sample["phrase"] not in present:
            negatives += 1
            assert not sample["target"].any()
        assert sample["text_weight"] == 1.0  # visual=False: text conditionals only
    assert negatives >= 18


def test_sampling_options_are_checked():
    with pytest.raises(ValueError, match="negative_rate"):
        SamplingOptions(negative_rate=1.0)
    with pytest.raises(ValueError, match="template"):
        SamplingOptions(templates=("a photo",))
