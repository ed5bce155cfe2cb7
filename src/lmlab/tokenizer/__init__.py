"""Byte-level BPE written from scratch: training it on text, and text to ids and back.

The tokenizer deals only in text and ids; writing ids to a token file is :mod:`lmlab.tokens`."""

from lmlab.tokenizer.tokenizer import END_OF_TEXT, Tokenizer
from lmlab.tokenizer.train import train_bpe

__all__ = ["END_OF_TEXT", "Tokenizer", "train_bpe"]
