"""Text prompts: validation, splitting, the exclusion mark, tokenization with open_clip's CLIP tokenizer."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from clipseg_ros.engine.limits import MAX_PROMPT_CHARS

log = logging.getLogger(__name__)


# A leading "-" marks an exclusion prompt: "cup; -hand" finds cups, less any pixel the hand prompt finds. Not "!":
# YAML reads a leading "!" as a tag, and shells expand it inside double quotes.
EXCLUDE_MARK = "-"


def clean_prompt(text: str) -> str:
    """The prompt stripped ("- hand" -> "-hand"); empty prompts are an error, absurdly long ones are cut."""
    if not isinstance(text, str):
        raise ValueError(f"a text prompt must be a string, got {type(text).__name__}")
    text = _joined_mark(text.strip())
    if not text:
        raise ValueError("empty text prompt: name what to segment, e.g. 'cup'")
    if text == EXCLUDE_MARK:
        raise ValueError(f"exclusion prompt {EXCLUDE_MARK!r} names nothing: write e.g. '{EXCLUDE_MARK}hand'")
    # Cut silently: this runs for every prompt of every frame. The tokenizer, which runs once per new
    # prompt (embeddings are cached), says what it drops.
    return text[:MAX_PROMPT_CHARS]


def is_exclusion(label: str) -> bool:
    """Whether a prompt's label marks it as an exclusion: its pixels are removed from every other prompt's."""
    return label.startswith(EXCLUDE_MARK)


def prompt_subject(label: str) -> str:
    """What the model is asked to find: the label without its exclusion mark ("-hand" -> "hand")."""
    return label[len(EXCLUDE_MARK) :].strip() if is_exclusion(label) else label


def check_exclusions(labels: Sequence[str]) -> None:
    """Refuse a prompt set whose exclusions leave nothing to find, or exclude what it also asks for."""
    excluded = {prompt_subject(label) for label in labels if is_exclusion(label)}
    if excluded and all(is_exclusion(label) for label in labels):
        raise ValueError(f"only exclusion prompts ({', '.join(sorted(excluded))}): add one naming what to segment")
    both = excluded & {label for label in labels if not is_exclusion(label)}
    if both:
        raise ValueError(f"{', '.join(sorted(both))} is both segmented and excluded: drop one of them")


def split_prompts(text: str, separator: str = ";") -> list[str]:
    """'cup; red mug' -> ['cup', 'red mug'], 'cup; - hand' -> ['cup', '-hand']; blank parts are dropped."""
    return [_joined_mark(part.strip()) for part in text.split(separator) if part.strip()]


def _joined_mark(text: str) -> str:
    return EXCLUDE_MARK + text[len(EXCLUDE_MARK) :].strip() if is_exclusion(text) else text


class Tokenizer:
    """CLIP BPE tokens, padded to the context length; over-long prompts truncated with a warning."""

    def __init__(self, context_length: int = 77):
        # Imported here, as the model in backbone.build_open_clip (the same package import, paid once).
        from open_clip.tokenizer import SimpleTokenizer

        self.context_length = context_length
        self._bpe = SimpleTokenizer(context_length=context_length)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        room = self.context_length - 2  # start and end tokens
        for text in texts:
            count = len(self._bpe.encode(text))
            if count > room:
                log.warning("prompt %r has %d tokens; only the first %d are used", text[:60], count, room)
        return self._bpe(list(texts), context_length=self.context_length)
