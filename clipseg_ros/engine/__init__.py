"""The CLIPSeg engine: model, checkpoints, prompts, caching, pre/post-processing and the runtimes.

Numpy in, numpy out (`Segmenter`); imports nothing of ROS, of training or of the commands.
"""
