"""Training and evaluation of the CLIPSeg decoder as the paper does (CLIP frozen, PhraseCut(+) sampling).

Built on the engine (`clipseg_ros.engine`: model, checkpoints, segmenter), never a copy; the engine never imports
from here. The clipseg-train and clipseg-eval commands are in `clipseg_ros.commands`.

    sources.py         the annotation list every reader gives (image, phrase, mask drawer)
    dataset_opener.py  open_source(): which reader a dataset directory needs
    phrasecut.py       VGPhraseCut reader (refer_<split>.json polygons + images/)
    folder_dataset.py  images + mask PNGs + annotations.jsonl/csv, for a team's own objects
    synthetic.py       coloured shapes on textures, written in the folder format (tests, dry runs)
    synthetic_sequence.py  those shapes moving in 3D with true ids: the ground truth of tracking
    tracking_eval.py   trackers scored against it (motmetrics), ByteTrack beside; flicker of steady masks
    phrasecut_plus.py  PhraseCut+ samples: templates, visual supports, negatives, text weight
    init_model.py      the starting model: a released checkpoint or a fresh decoder on CLIP weights
    trainer.py         the loop: BCE, AdamW + cosine, AMP on CUDA, resumable state, HF-layout result
    metrics.py         mIoU, IoU_FG, AP, IoU_BIN at a threshold and over a sweep
    evaluate.py        scores a Segmenter on a source; report.py writes the JSON and the figure
    shapes_model.py    the demo's small model: trained here on synthetic shapes, evaluated, cached
"""
