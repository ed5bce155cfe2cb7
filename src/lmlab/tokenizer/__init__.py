"""Byte-level BPE written from scratch: training, encoding, and tokenizing datasets to ``.bin``."""

from lmlab.tokenizer.tokenizer import Tokenizer
from lmlab.tokenizer.train import train_bpe

__all__ = ["Tokenizer", "train_bpe"]
