"""`python -m reelflow`: the `reelflow` command. The command line is the terminal edge
(`cli/`, above every floor); it is named here as a string, as the console script names
it, so the ground floor imports nothing above it."""

import importlib

importlib.import_module("cli").main()
