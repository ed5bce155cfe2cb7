"""lmlab: pretrain small Transformer language models from scratch, and learn how they behave."""

__version__ = "0.1.0"
