"""`python -m codec` runs the command line (and lets `torchrun -m codec train ...` work)."""

from codec.cli import main

main()
