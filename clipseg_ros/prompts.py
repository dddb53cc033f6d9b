"""Text prompts: validation, splitting, tokenization with open_clip's CLIP tokenizer."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from open_clip.tokenizer import SimpleTokenizer

from .limits import MAX_PROMPT_CHARS

log = logging.getLogger(__name__)


def clean_prompt(text: str) -> str:
    """The prompt stripped; empty prompts are an error, absurdly long ones are cut."""
    if not isinstance(text, str):
        raise ValueError(f"a text prompt must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ValueError("empty text prompt: name what to segment, e.g. 'cup'")
    # Cut silently: this runs for every prompt of every frame. The tokenizer, which runs once per new
    # prompt (embeddings are cached), says what it drops.
    return text[:MAX_PROMPT_CHARS]


def split_prompts(text: str, separator: str = ";") -> list[str]:
    """'cup; red mug' -> ['cup', 'red mug']; blank parts are dropped."""
    return [part.strip() for part in text.split(separator) if part.strip()]


class Tokenizer:
    """CLIP BPE tokens, padded to the context length; over-long prompts truncated with a warning."""

    def __init__(self, context_length: int = 77):
        self.context_length = context_length
        self._bpe = SimpleTokenizer(context_length=context_length)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        room = self.context_length - 2  # start and end tokens
        for text in texts:
            count = len(self._bpe.encode(text))
            if count > room:
                log.warning("prompt %r has %d tokens; only the first %d are used", text[:60], count, room)
        return self._bpe(list(texts), context_length=self.context_length)
