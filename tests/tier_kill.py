"""``medcompute serve`` that SIGKILLs itself right after one step of a tier move.

    python -m tests.tier_kill STEP|TARGET:STEP serve ...

Sets the tier mover's fault-injection seam (``tiers.step_hook``) in this process only,
then runs the command line as ``medcompute`` would."""

from __future__ import annotations

import os
import signal
import sys

from medcompute.client.cli import main
from medcompute.server.store import tiers


def _kill_at(wanted: str):
    def hook(step: str, target: str) -> None:
        if wanted in (step, f"{target}:{step}"):
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


if __name__ == "__main__":
    tiers.step_hook = _kill_at(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
