"""End to end through the real server and a real Dask cluster of worker processes."""

import os

import numpy as np
import pytest
import scipy.ndimage as ndi

from medcompute.client import Client, ServiceError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _volume(shape=(12, 40, 36), dtype=np.int16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-500, 1500, size=shape).astype(dtype)


def test_gaussian_matches_scipy_and_reports_what_was_applied(client, server):
    vol = _volume()
    result = client.process(vol, ["gaussian:sigma=1.5"], device="cpu")
    expected = ndi.gaussian_filter(vol.astype(np.float32), 1.5, mode="nearest", truncate=4.0)
    assert result.array.dtype == np.float32 and result.array.shape == vol.shape
    np.testing.assert_allclose(result.array, expected, rtol=1e-5, atol=1e-3)
    [applied] = result.applied
    assert applied["name"] == "gaussian"
    assert "sigma=1.5" not in applied["summary"] or "voxel" in applied["summary"]
    params = {p["name"]: p for p in applied["parameters"]}
    assert params["sigma"]["values"] == [1.5, 1.5, 1.5] and params["sigma"]["unit"] == "voxel"
    assert params["truncate"]["values"] == [4.0] and params["mode"]["text"] == "nearest"
    header = result.header
    assert header.backend == "numpy" and header.device == "cpu"
    assert header.worker.startswith("tcp://127.0.0.1:")
    assert not header.fallback.happened
    assert {"numpy", "scipy", "python", "medcompute"} <= set(header.versions)


def test_usage_record_is_complete_and_stored_once(client, server):
    vol = _volume((4, 32, 32), np.uint16)
    result = client.process(vol, ["mean:size=3", "edge:operator=prewitt"])
    usage = result.usage
    assert usage["job_id"] == result.job_id
    assert usage["subscriber"] == "local"
    assert usage["operations"] == ["mean", "edge"]
    assert usage["images"] == 1 and int(usage["voxels"]) == vol.size
    assert int(usage["bytes_in"]) == vol.nbytes
    assert int(usage["bytes_out"]) == vol.size * 4
    assert usage["compute_seconds"] > 0
    assert usage["wall_seconds"] >= usage["compute_seconds"]
    assert usage["queue_seconds"] >= 0
    assert usage["backend"] == "numpy" and usage["device"] == "cpu"
    assert usage["state"] == "SUCCEEDED"
    # Absent, not zero, where nothing was measured.
    assert "gpu_seconds" not in usage and "energy_joules" not in usage
    assert not result.header.usage.HasField("gpu_seconds")
    stored = server.call(server.catalog.usage_for(result.job_id))
    assert len(stored) == 1 and stored[0]["compute_seconds"] == usage["compute_seconds"]
    job = server.call(server.catalog.get_job(result.job_id))
    assert job.state.value == "SUCCEEDED" and job.worker == result.header.worker


def test_work_runs_on_a_worker_process_not_in_the_server(client, server):
    async def worker_pids():
        return await server.running.dispatcher.client.run(os.getpid)

    pids = server.call(worker_pids())
    assert os.getpid() not in pids.values()
    result = client.process(_volume((2, 8, 8)), ["gaussian:sigma=1"])
    assert result.header.worker in pids


def test_mm_units_honour_the_spacing(client):
    vol = _volume((10, 30, 30)).astype(np.float32)
    result = client.process(vol, ["gaussian:sigma_mm=2"], spacing=(4.0, 1.0, 0.5))
    expected = ndi.gaussian_filter(vol, (0.5, 2.0, 4.0), mode="nearest")
    np.testing.assert_allclose(result.array, expected, rtol=1e-5, atol=1e-3)
    params = {p["name"]: p for p in result.applied[0]["parameters"]}
    assert params["sigma"]["values"] == [0.5, 2.0, 4.0]
    assert params["sigma_mm"]["values"] == [2.0, 2.0, 2.0] and params["sigma_mm"]["unit"] == "mm"
    assert result.spacing == (4.0, 1.0, 0.5)


def test_projection_changes_the_shape_and_the_spacing(client):
    vol = _volume((6, 20, 24))
    result = client.process(vol, ["mip:axis=0"], spacing=(3.0, 0.7, 0.7))
    np.testing.assert_array_equal(result.array, vol.max(axis=0).astype(np.float32))
    assert result.spacing == (0.7, 0.7)


def test_subtract_an_operand_and_a_mask_frame(client):
    vol = _volume((5, 16, 16))
    mask = vol[0]
    result = client.process(vol, ["subtract"], operands=[mask])
    np.testing.assert_array_equal(result.array, (vol - mask[None]).astype(np.float32))
    same = client.process(vol, ["subtract:mask_frame=0"])
    np.testing.assert_array_equal(same.array, result.array)
    added = client.process(vol, ["add:weight=2"], operands=[vol])
    np.testing.assert_array_equal(added.array, 3 * vol.astype(np.float32))


def test_output_dtype_is_a_saturating_cast(client):
    vol = np.array([[-10, 0, 100, 300]], dtype=np.int16)
    result = client.process(vol, ["mean:size=1"], output_dtype="uint8")
    assert result.array.dtype == np.uint8
    np.testing.assert_array_equal(result.array, [[0, 0, 100, 255]])


@pytest.mark.parametrize("compression", ["zstd", "blosc"])
def test_compressed_transfer_round_trips(client, compression):
    vol = _volume((40, 128, 128))  # 1.25 MiB: several chunks
    plain = client.process(vol, ["median:size=3"], output_dtype="int16")
    packed = client.process(vol, ["median:size=3"], output_dtype="int16",
                            compression=compression)
    np.testing.assert_array_equal(plain.array, packed.array)
    np.testing.assert_array_equal(plain.array, ndi.median_filter(vol, 3, mode="nearest"))


def test_list_operations(client):
    ops = {o["name"]: o for o in client.operations()}
    assert set(ops) == {"gaussian", "mean", "median", "laplacian", "gradient", "edge",
                        "bandpass", "project", "subtract", "add"}
    sigma = {p["name"]: p for p in ops["gaussian"]["parameters"]}
    assert sigma["sigma"]["unit"] == "voxel" and sigma["sigma_mm"]["unit"] == "mm"
    assert sigma["truncate"]["default"] == "4" and sigma["mode"]["default"] == "nearest"


def test_health_and_reflection(server):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "medcompute.v1.ProcessingService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in reply.list_services_response.service}
        assert {"medcompute.v1.ProcessingService", "grpc.health.v1.Health"} <= names


def test_an_unreachable_server_is_one_exception_with_a_code():
    import grpc

    with Client("127.0.0.1:1", timeout=5) as c, pytest.raises(ServiceError) as info:
        c.operations()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_views_and_big_endian_arrays_are_sent_as_their_values(client):
    vol = _volume((6, 20, 20)).astype(">i2")
    view = vol[::2, 3:15, ::-1]
    r = client.process(view, ["mean:size=1"])
    np.testing.assert_array_equal(r.array, view.astype(np.float32))
