"""`python -m traindock.cli`: the same command line as the `traindock` script."""

from traindock.cli import main

main()
