"""`python -m lmlab` runs the CLI (and is what `torchrun -m lmlab` launches)."""

from lmlab.cli import main

main()
