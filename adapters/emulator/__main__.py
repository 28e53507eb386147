"""``python -m adapters.emulator [host] [port]``: the emulator without the gateway CLI."""

import sys

from adapters.emulator import run_emulator

if __name__ == "__main__":
    args = sys.argv[1:]
    run_emulator(args[0] if args else "127.0.0.1", int(args[1]) if len(args) > 1 else 8090)
