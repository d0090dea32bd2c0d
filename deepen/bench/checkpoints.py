"""Checkpoints with a member's architecture and tokenizer but weights drawn at random: timing members whose weights
are not at hand (``--random-weights``)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


def random_weight_members(sources: list[str], out_dir: Path) -> list[str]:
    """Checkpoints with each source's architecture (config.json) and tokenizer but weights drawn at random (seeded),
    for timing members whose weights are not at hand. Returns the new directories."""
    dirs = []
    for i, src in enumerate(sources):
        target = out_dir / f"random-{i}-{Path(src).name}"
        if not (target / "config.json").is_file():
            config = AutoConfig.from_pretrained(src)
            torch.manual_seed(i)
            model = AutoModelForCausalLM.from_config(config)
            AutoTokenizer.from_pretrained(src).save_pretrained(target)
            model.save_pretrained(target)
            del model
        dirs.append(str(target))
    return dirs
