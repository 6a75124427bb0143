"""node.py: the DICOM port's limits checked from the configuration, each refusal naming
its option."""

from __future__ import annotations

import pytest

from medcompute.server.config import ServerConfig
from medcompute.server.dicomnet.listener import Limits
from medcompute.server.dicomnet.node import limits_of
from medcompute.server.errors import FailedPrecondition


def test_the_limits_come_from_the_configuration():
    assert limits_of(ServerConfig()) == Limits(5.0, 16 << 20, 8)
    assert limits_of(ServerConfig(dicom_pending_timeout=1.5, dicom_max_pdu=4096,
                                  dicom_max_per_host=1)) == Limits(1.5, 4096, 1)


@pytest.mark.parametrize("changes, option", [
    ({"dicom_pending_timeout": 0}, "--dicom-pending-timeout"),
    ({"dicom_pending_timeout": float("inf")}, "--dicom-pending-timeout"),
    ({"dicom_pending_timeout": float("nan")}, "--dicom-pending-timeout"),
    ({"dicom_max_pdu": 4095}, "--dicom-max-pdu"),
    ({"dicom_max_pdu": (1 << 30) + 1}, "--dicom-max-pdu"),
    ({"dicom_max_per_host": 0}, "--dicom-max-per-host"),
])
def test_a_limit_out_of_range_names_its_option(changes, option):
    with pytest.raises(FailedPrecondition) as err:
        limits_of(ServerConfig(**changes))
    assert err.value.field == option and err.value.message.startswith("expected")
