"""How runs are logged, for every entry point: the console logger the code location installs (console.py) and
the one-line cause of a failed run (failure.py), read by the CLI commands too."""
