"""A local Chatbase API v2 emulator: ``switchboard emulator`` serves it, ``switchboard demo`` and the
tests talk to it. Answers follow the deterministic rules of :mod:`adapters.emulator.brain`.

    emulator = Emulator(token_delay=0.01)
    async with emulator.serve() as base_url:   # "http://127.0.0.1:<port>/api/v2"
        emulator.faults.fail_next(503, count=2)
        ...
"""

from adapters.emulator.app import MISSING_AGENT, Emulator, RecordedRequest, run_emulator
from adapters.emulator.faults import Faults

__all__ = ["MISSING_AGENT", "Emulator", "Faults", "RecordedRequest", "run_emulator"]
