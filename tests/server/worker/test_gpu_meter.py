"""A job's GPU energy: NVML's whole-device counter, given to the job only when it had the
GPU alone and ran long enough; else absent, with the reason. NVML faked (no GPU here)."""

import time
from types import SimpleNamespace

import pytest

from medcompute.server.worker import gpu_meter
from medcompute.server.worker.gpu_meter import MIN_SECONDS, GpuMeter


class FakeNvml:
    """NVML's energy counter (mJ) and running processes of one device."""

    def __init__(self, others=()):
        self.inits = 0
        self.energy_mj = 1_000_000
        self.others = list(others)

    def nvmlInit(self):
        self.inits += 1

    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        return f"handle:{bus_id}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self.energy_mj

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=p) for p in [4242, *self.others]]


@pytest.fixture(autouse=True)
def fresh_handles(monkeypatch):
    monkeypatch.setattr(gpu_meter, "_handles", {})


def _job(nvml, *, seconds, during=None, bus="0000:19:00.0"):
    meter = GpuMeter(bus, nvml=nvml, pid=4242)
    nvml.energy_mj += 250_000                      # 250 J while the job runs
    if during:
        during()
    meter.started -= seconds                        # as if it ran this long
    return meter.joules(), meter.absent


def test_a_job_alone_on_the_gpu_gets_the_counters_difference():
    nvml = FakeNvml()
    assert _job(nvml, seconds=1.0) == (250.0, "")
    assert _job(nvml, seconds=1.0) == (250.0, "")
    assert nvml.inits == 1                          # NVML initialised once per process


def test_another_process_on_the_gpu_means_no_energy_with_the_reason():
    nvml = FakeNvml(others=[777])
    joules, why = _job(nvml, seconds=1.0)
    assert joules is None and "1 other process(es) used the GPU" in why
    nvml = FakeNvml()
    joules, why = _job(nvml, seconds=1.0, during=lambda: nvml.others.append(778))
    assert joules is None and "other process" in why   # one that came during the job


def test_a_job_shorter_than_the_counters_interval_gets_no_energy():
    joules, why = _job(FakeNvml(), seconds=0.0)
    assert joules is None and f"{MIN_SECONDS * 1e3:.0f} ms" in why


def test_no_cuda_device_or_no_counter_says_so():
    meter = GpuMeter(None)
    assert meter.joules() is None and "not a CUDA device" in meter.absent

    class NoCounter(FakeNvml):
        def nvmlDeviceGetTotalEnergyConsumption(self, handle):
            raise RuntimeError("not supported")
    meter = GpuMeter("0000:1a:00.0", nvml=NoCounter(), pid=4242)
    time.sleep(0)
    assert meter.joules() is None and "no energy counter" in meter.absent
