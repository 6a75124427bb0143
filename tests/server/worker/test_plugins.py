"""Worker plug-ins made on first use: importing the server does not import distributed
(whose import sets up its own loggers, which the log redaction must still reach)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from medcompute.server.worker import packages, tasks


def test_importing_the_server_does_not_import_distributed():
    done = subprocess.run([sys.executable, "-c", "import sys, medcompute.server.app; "
                           "print('distributed' in sys.modules)"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_the_plugins_are_worker_plugins_that_pickle_by_name():
    from distributed import WorkerPlugin

    warm = tasks.warm_up_plugin()
    assert isinstance(warm, WorkerPlugin) and warm.name == "medcompute-warm-up"
    assert type(warm) is tasks.WarmUp                    # the module names the class
    assert type(pickle.loads(pickle.dumps(warm))) is tasks.WarmUp
    software = packages.software_plugin("sharpen", "1.0", "ab" * 32, "s.whl", b"wheel")
    assert isinstance(software, WorkerPlugin)
    assert type(pickle.loads(pickle.dumps(software))) is packages.SoftwarePlugin


def test_a_name_the_module_does_not_have_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchPlugin'"):
        tasks.NoSuchPlugin  # noqa: B018
