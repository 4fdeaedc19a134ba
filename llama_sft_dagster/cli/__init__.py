"""Command-line entry points: `sft-materialize-stale` (cli/stale.py) and `python -m llama_sft_dagster.cli.ui`."""
