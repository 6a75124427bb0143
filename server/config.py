"""Server configuration: one dataclass, filled from the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ServerConfig", "DEFAULT_ADDRESS", "DEFAULT_DATA_DIR"]

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_DATA_DIR = Path(os.environ.get("MEDCOMPUTE_DATA_DIR", "data"))


@dataclass
class ServerConfig:
    address: str = DEFAULT_ADDRESS
    data_dir: Path = DEFAULT_DATA_DIR
    #: Worker processes of the embedded cluster; None: one per core.
    workers: int | None = None
    #: External Dask scheduler; None: start an embedded LocalCluster.
    scheduler: str | None = None
    #: Largest image accepted, in decoded bytes.
    max_image_bytes: int = 4 << 30
    #: Largest image accepted, in voxels.
    max_voxels: int = 1 << 30
    #: Seconds a graceful stop waits for calls in flight.
    grace: float = 5.0
    #: Subscriber of every call until API keys exist.
    subscriber: str = "local"
