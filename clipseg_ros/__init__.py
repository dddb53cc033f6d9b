"""CLIPSeg for robots: a ROS-free engine (this package) and a ROS 2 layer (`clipseg_ros.ros`).

The public names load on first use: `import clipseg_ros.ros.image_codec` (the sample camera,
message conversion) must not pay for importing torch.
"""

from importlib import import_module

_EXPORTS = {
    "DEFAULT_WEIGHTS": "engine.checkpoints",
    "CheckpointError": "engine.checkpoints",
    "load_model": "engine.checkpoints",
    "save_hf": "engine.checkpoints",
    "SegmentationResult": "engine.segmenter",
    "Segmenter": "engine.segmenter",
    "VisualPrompt": "engine.visual_prompt",
    "VisualPromptStyle": "engine.visual_prompt",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clipseg_ros' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
