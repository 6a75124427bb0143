"""The FakeGPU (server/worker/fakegpu.py) in the test's own process."""

from __future__ import annotations

import contextlib
import json

from medcompute.server.worker import fakegpu, kernel_cache


@contextlib.contextmanager
def fake_device(monkeypatch, tmp_path, **initial):
    """A fake device in this process, restarted (nothing compiled, context working, no
    stream work); gives the function that sets the fake's control values (``fail``,
    ``compile_delay`` ...), starting from ``initial``."""
    control = tmp_path / "control.json"

    def set_control(**values):
        control.write_text(json.dumps(values))
    set_control(**{"fail": None, **initial})
    monkeypatch.setenv("MEDCOMPUTE_GPU_BACKEND", "fake")
    monkeypatch.setenv(fakegpu.CONTROL_ENV, str(control))
    monkeypatch.setenv(fakegpu.MEMORY_ENV, str(1 << 30))
    fakegpu.restart()
    monkeypatch.setattr(kernel_cache, "_seen", set())
    try:
        yield set_control
    finally:
        fakegpu.restart()
