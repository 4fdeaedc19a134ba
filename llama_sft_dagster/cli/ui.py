"""Start the Dagster web UI (`dagster dev`) on this project's persistent instance.

    python -m llama_sft_dagster.cli.ui --host 127.0.0.1 --port 3000      (or `make ui`)

Binds to 127.0.0.1 unless told otherwise. Stop it with Ctrl-C or `kill <pid>` (SIGTERM).
Why not plain `dagster dev &`: a process started in the background from a non-interactive shell
inherits SIGINT as *ignored*, and `dagster dev` installs that same handler for SIGTERM, so it cannot
be stopped (measured on 1.13). Restoring both signals to their defaults before exec fixes it:
SIGTERM then stops the webserver, daemon and code server in about 4 s.
"""

import argparse
import os
import signal
import sys
from pathlib import Path

from llama_sft_dagster.cli.home import ensure_dagster_home

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"


def dagster_dev_command(host: str, port: int) -> list[str]:
    # workspace.yaml names the code location; `make demo` (cli/demo.py) creates its runs from the same one,
    # so they show on the job page and re-execute from the UI
    target = ["-w", str(WORKSPACE)] if WORKSPACE.exists() else ["-m", "llama_sft_dagster.definitions"]
    return [sys.executable, "-m", "dagster", "dev", *target, "-h", host, "-p", str(port)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llama_sft_dagster.cli.ui", description="Start the Dagster web UI.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    args = parser.parse_args(argv)
    home = ensure_dagster_home()
    print(f"DAGSTER_HOME={home}; web UI on http://{args.host}:{args.port}", flush=True)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    command = dagster_dev_command(args.host, args.port)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
