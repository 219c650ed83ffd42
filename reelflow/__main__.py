"""`python -m reelflow`: the command line, as the `reelflow` script runs it."""

from reelflow.cli import main

main()
