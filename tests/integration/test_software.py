"""The software registry end to end, with real API keys, a 2-worker cluster and a wheel
built by the test: registered by a publisher, approved by an administrator, run in
pipelines beside the built-in operations (its result the function's own), its failures
failing their jobs alone, delivered to the subscribers its publisher granted it."""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from medcompute import kernels
from medcompute.client import Client, ServiceError, exits
from medcompute.client.cli import main
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore
from medcompute.server.worker import packages
from tests.software_helpers import SHARPEN, build_wheel, load_module

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

UNSHARP = "unsharp_mask@sharpen==1.0"


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("software")
    keys = KeyStore(data)
    tokens = {}
    for name, subscriber, roles in [
        ("admin", "operator", ["admin"]),
        ("publisher", "acme", ["publisher", "process"]),
        ("hospital", "st-mary", ["process"]),
        ("clinic", "north-clinic", ["process"]),
    ]:
        _, tokens[name] = keys.create(subscriber, roles)
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=2, gpu_workers=0,
                          software_memory_bytes=768 << 20, software_seconds=60)
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


@pytest.fixture(scope="module")
def connect(site):
    opened = []

    def connect(who):
        c = Client(site.address, timeout=120, api_key=site.tokens[who])
        opened.append(c)
        return c
    yield connect
    for c in opened:
        c.close()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return load_module(tmp_path_factory.mktemp("module"))


@pytest.fixture(scope="module")
def added(connect, wheel):
    return connect("publisher").software.add(wheel, vendor="Acme Imaging", licence="MIT",
                                             fee_per_use=0.25)


@pytest.fixture(scope="module")
def approved(connect, added):
    return connect("admin").software.approve("sharpen", "1.0")


def on_workers(site, fn, *args):
    """``dispatcher.client.<fn>(*args)`` awaited on the server's loop."""
    client = site.running.dispatcher.client

    async def call():
        return await getattr(client, fn)(*args)
    return site.call(call(), timeout=120)


def image(seed=1, shape=(48, 40)):
    return np.random.default_rng(seed).normal(500, 80, shape).astype(np.uint16)


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value.code, caught.value.details


def test_only_a_publisher_registers_a_package(connect, wheel):
    code, details = code_of(lambda: connect("hospital").software.add(
        wheel, vendor="Acme", licence="MIT"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "publisher role" in details


def test_a_registered_wheel_is_kept_by_its_sha256_pending_with_its_operations(added, wheel):
    assert added.name == "sharpen" and added.version == "1.0"
    assert added.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert (added.status, added.publisher, added.vendor, added.licence) == (
        "pending", "acme", "Acme Imaging", "MIT")
    assert added.fee_per_use == 0.25
    ops = {o.name: o for o in added.operations}
    assert sorted(ops) == ["exits", "forever", "hog", "raises", "unsharp_mask"]
    assert [p.name for p in ops["unsharp_mask"].parameters] == ["amount", "sigma"]


def test_the_same_version_again_is_refused(connect, added, wheel):
    code, details = code_of(lambda: connect("publisher").software.add(
        wheel, vendor="Acme", licence="MIT"))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "sharpen 1.0" in details


def test_a_file_that_is_not_a_wheel_is_refused_naming_the_field(connect, tmp_path):
    bogus = tmp_path / "sharpen-9.0-py3-none-any.whl"
    bogus.write_bytes(b"not a zip")
    code, details = code_of(lambda: connect("publisher").software.add(
        bogus, vendor="Acme", licence="MIT"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("wheel:")
    code, details = code_of(lambda: connect("publisher").software.add(
        build_wheel(tmp_path / "w", version="9.0"), vendor="", licence="MIT"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("vendor:")


def test_a_wheel_without_operations_is_refused(connect, tmp_path):
    empty = build_wheel(tmp_path, name="empty", operations={})
    code, details = code_of(lambda: connect("publisher").software.add(
        empty, vendor="Acme", licence="MIT"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "medcompute.operations" in details


def test_a_pending_version_neither_runs_nor_is_delivered(connect, added):
    hospital = connect("hospital")
    code, details = code_of(lambda: hospital.process(image(), [UNSHARP]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "header.pipeline[0].package.version" in details and "pending" in details
    code, details = code_of(lambda: connect("publisher").software.download(
        "sharpen", "1.0", "/nonexistent"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "pending" in details


def test_only_an_administrator_approves(connect, added):
    code, _ = code_of(lambda: connect("publisher").software.approve("sharpen", "1.0"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, details = code_of(lambda: connect("admin").software.approve("sharpen", "7.7"))
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("version:")


def test_approved_operations_are_listed_with_their_package(connect, approved):
    assert approved.status == "approved"
    ops = [o for o in connect("hospital").operations() if o.get("package") == "sharpen"]
    unsharp = next(o for o in ops if o["name"] == "unsharp_mask")
    assert unsharp["version"] == "1.0" and unsharp["sha256"] == approved.sha256
    assert {p["name"] for p in unsharp["parameters"]} == {"amount", "sigma"}
    assert "gaussian" in {o["name"] for o in connect("hospital").operations()}


def test_every_worker_has_the_package_installed(site, approved):
    seen = on_workers(site, "run", packages.installed)
    assert len(seen) == 2
    for folders in seen.values():
        assert ("sharpen", "1.0", approved.sha256) in folders


def test_the_result_equals_the_function_called_in_process(connect, approved, sample):
    img = image()
    r = connect("hospital").process(img, [f"{UNSHARP}:amount=1.5,sigma=2"])
    want = sample.unsharp_mask(img.astype(np.float32), amount=1.5, sigma=2.0)
    np.testing.assert_array_equal(r.array, want.astype(np.float32))
    [applied] = r.applied
    params = {p["name"]: p for p in applied["parameters"]}
    assert applied["name"] == "unsharp_mask"
    assert params["package"]["text"] == "sharpen" and params["version"]["text"] == "1.0"
    assert params["sha256"]["text"] == approved.sha256
    assert params["amount"]["values"] == [1.5] and params["sigma"]["unit"] == "voxel"
    assert r.usage["software"] == [{"package": "sharpen", "version": "1.0",
                                    "sha256": approved.sha256, "operation": "unsharp_mask",
                                    "fee": 0.25}]


def test_a_package_operation_joins_a_pipeline_of_built_in_ones(connect, approved, sample):
    img = image(2)
    hospital = connect("hospital")
    r = hospital.process(img, ["gaussian:sigma=1", UNSHARP, "edge:operator=sobel"])
    assert [a["name"] for a in r.applied] == ["gaussian", "unsharp_mask", "edge"]
    smoothed = kernels.gaussian(img.astype(np.float32), (1.0, 1.0))
    sharpened = sample.unsharp_mask(smoothed, amount=1.0, sigma=1.0).astype(np.float32)
    want = kernels.edge(sharpened, "sobel")
    np.testing.assert_allclose(r.array, want, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize(("operation", "reason"), [
    ("raises", "ValueError: the sample refuses every image"),
    ("exits", "its process exited with status 7"),
    ("hog", "needed more than its memory limit of 768 MiB"),
])
def test_a_failing_operation_fails_its_job_alone_and_the_next_job_runs(
        connect, approved, sample, operation, reason):
    hospital = connect("hospital")
    code, details = code_of(lambda: hospital.process(image(), [f"{operation}@sharpen"]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert reason in details and "pipeline[0].package" in details
    img = image(5)
    r = hospital.process(img, [UNSHARP])
    want = sample.unsharp_mask(img.astype(np.float32))
    np.testing.assert_array_equal(r.array, want.astype(np.float32))


def test_unknown_operations_and_parameters_are_refused_naming_the_field(connect, approved):
    hospital = connect("hospital")
    code, details = code_of(lambda: hospital.process(image(), ["unsharp_mask@nothing"]))
    assert code == grpc.StatusCode.NOT_FOUND and "pipeline[0].package.package" in details
    code, details = code_of(lambda: hospital.process(image(), ["blur@sharpen"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "pipeline[0].package.operation" in details
    code, details = code_of(lambda: hospital.process(image(), [f"{UNSHARP}:radius=2"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "params[radius]" in details and "amount, sigma" in details


def test_two_versions_coexist(connect, approved, tmp_path):
    source = SHARPEN.replace("return image + amount * (image - blurred)",
                             "return image + 2 * amount * (image - blurred)")
    connect("publisher").software.add(build_wheel(tmp_path, version="2.0", source=source),
                                      vendor="Acme Imaging", licence="MIT", fee_per_use=0.5)
    connect("admin").software.approve("sharpen", "2.0")
    img = image(3)
    hospital = connect("hospital")
    one = hospital.process(img, [UNSHARP]).array
    two = hospital.process(img, ["unsharp_mask@sharpen==2.0"]).array
    newest = hospital.process(img, ["unsharp_mask@sharpen"])
    detail = one - img.astype(np.float32)
    np.testing.assert_allclose(two - img.astype(np.float32), 2 * detail, rtol=1e-4, atol=1e-2)
    np.testing.assert_array_equal(newest.array, two)
    assert {p["name"]: p.get("text") for p in newest.applied[0]["parameters"]}["version"] \
        == "2.0"


def test_a_worker_that_joins_later_gets_the_package(site, approved, tmp_path):
    scheduler = site.running.dispatcher.client.scheduler.address
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "dask"), "worker", scheduler, "--nthreads", "1",
         "--no-nanny", "--local-directory", str(tmp_path / "late")], stdout=log, stderr=log)
    try:
        on_workers(site, "wait_for_workers", 3)
        seen = on_workers(site, "run", packages.installed)
        assert len(seen) == 3
        for folders in seen.values():
            assert ("sharpen", "1.0", approved.sha256) in folders
        assert any(str(tmp_path / "late") in f for folders in seen.values()
                   for f in folders.values())
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()


def test_delivery_needs_the_publishers_grant_and_is_verified_by_hash(
        connect, approved, wheel, tmp_path):
    clinic = connect("clinic")
    code, details = code_of(lambda: clinic.software.download("sharpen", "1.0", tmp_path))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "not granted" in details
    code, _ = code_of(lambda: clinic.software.grant("sharpen", "north-clinic"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    connect("publisher").software.grant("sharpen", "north-clinic")
    path = clinic.software.download("sharpen", "1.0", tmp_path / "got")
    assert path.name == wheel.name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == approved.sha256
    code, _ = code_of(lambda: connect("hospital").software.download("sharpen", "1.0", tmp_path))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_a_retired_version_neither_runs_nor_is_delivered(connect, approved, tmp_path):
    retired = connect("admin").software.retire("sharpen", "1.0")
    assert retired.status == "retired"
    code, details = code_of(lambda: connect("hospital").process(image(), [UNSHARP]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "retired" in details
    code, details = code_of(lambda: connect("clinic").software.download(
        "sharpen", "1.0", tmp_path))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "retired" in details
    code, _ = code_of(lambda: connect("admin").software.approve("sharpen", "1.0"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    listed = {(p.name, p.version): p.status for p in connect("admin").software.list("sharpen")}
    assert listed[("sharpen", "1.0")] == "retired"
    assert ("sharpen", "1.0") not in {(p.name, p.version)
                                      for p in connect("hospital").software.list()}


def test_the_publisher_sees_the_uses_and_downloads_and_the_invoice_prices_them(
        connect, approved):
    uses = {(u.name, u.version): u for u in connect("publisher").software.uses()}
    one, two = uses[("sharpen", "1.0")], uses[("sharpen", "2.0")]
    # The successful jobs of the tests above: a failed job is no use.
    assert (one.uses, one.downloads, two.uses, two.downloads) == (6, 1, 2, 0)
    assert one.fees == pytest.approx(6 * 0.25) and two.fees == pytest.approx(2 * 0.5)
    code, _ = code_of(lambda: connect("hospital").software.uses())
    assert code == grpc.StatusCode.PERMISSION_DENIED
    month = time.strftime("%Y-%m", time.gmtime())
    inv = connect("admin").invoice(month, all_subscribers=True)
    lines = {(s.subscriber, line.item, line.package): line
             for s in inv.subscribers for line in s.lines if line.package}
    used = lines[("st-mary", "software_use", "sharpen==1.0")]
    assert used.quantity == 6 and used.unit_price == "0.251"      # fee + the tariff's 0.001
    assert lines[("st-mary", "software_use", "sharpen==2.0")].quantity == 2
    got = lines[("north-clinic", "software_download", "sharpen==1.0")]
    assert (got.quantity, got.unit_price, got.amount) == (1, "0.01", "0.01")


@pytest.fixture
def cli(site, capsys):
    def run(who, *args):
        code = main([*args, "--server", site.address, "--api-key", site.tokens[who]])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_the_software_commands(cli, tmp_path):
    source = "def invert(image, offset=0.0):\n    \"\"\"Negative.\"\"\"\n" \
             "    return offset - image\n\n\ninvert.params = {'offset': {'default': 0}}\n"
    wheel = build_wheel(tmp_path / "w", name="negatives", version="0.3", source=source,
                        operations={"invert": "invert"})
    code, _, err = cli("hospital", "software", "add", str(wheel), "--vendor", "Acme")
    assert code == exits.for_status(grpc.StatusCode.PERMISSION_DENIED), err
    code, out, err = cli("publisher", "software", "add", str(wheel), "--vendor", "Acme",
                         "--fee", "0.1", "--json")
    assert code == 0, err
    added = json.loads(out)
    assert (added["name"], added["status"], added["licence"]) == ("negatives", "pending", "MIT")
    code, out, _ = cli("admin", "software", "approve", "negatives==0.3")
    assert code == 0 and out.startswith("negatives==0.3  approved")
    code, out, _ = cli("hospital", "software", "info", "negatives")
    assert code == 0 and "invert: Negative." in out and "offset" in out
    code, out, _ = cli("hospital", "software", "list")
    assert "negatives==0.3  approved" in out
    code, out, _ = cli("hospital", "ops", "--json")
    assert any(o["name"] == "invert" and o.get("package") == "negatives"
               for o in json.loads(out))
    code, out, _ = cli("hospital", "ops")
    assert "invert (negatives 0.3): Negative." in out
    np.save(tmp_path / "in.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    code, _, err = cli("hospital", "process", str(tmp_path / "in.npy"), "--op",
                       "invert@negatives:offset=100", "-o", str(tmp_path / "out.npy"))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"),
                                  100 - np.arange(12, dtype=np.float32).reshape(3, 4))
    code, _, err = cli("clinic", "software", "get", "negatives==0.3", "-o", str(tmp_path))
    assert code == exits.for_status(grpc.StatusCode.PERMISSION_DENIED), err
    assert cli("publisher", "software", "grant", "negatives", "north-clinic")[0] == 0
    code, out, _ = cli("clinic", "software", "get", "negatives==0.3", "-o",
                       str(tmp_path / "got"))
    assert code == 0 and Path(out.strip()).read_bytes() == wheel.read_bytes()
    code, _, err = cli("clinic", "software", "get", "negatives", "-o", str(tmp_path))
    assert code == 2 and "NAME==VERSION" in err
    code, out, _ = cli("publisher", "software", "uses")
    assert "negatives==0.3  1 use(s), 1 download(s)" in out
