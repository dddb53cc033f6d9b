"""CLIPSeg for robots: a ROS-free engine (this package) and a ROS 2 layer (`clipseg_ros.ros`).

The public names load on first use: `import clipseg_ros.ros.image_codec` (the sample camera,
message conversion) must not pay for importing torch.
"""

from importlib import import_module

_EXPORTS = {
    "DEFAULT_WEIGHTS": "checkpoints",
    "CheckpointError": "checkpoints",
    "load_model": "checkpoints",
    "save_hf": "checkpoints",
    "SegmentationResult": "segmenter",
    "Segmenter": "segmenter",
    "VisualPrompt": "visual_prompt",
    "VisualPromptStyle": "visual_prompt",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clipseg_ros' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
