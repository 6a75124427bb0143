"""The command line of asynchronous jobs, delivery and billing, as the README's tour runs
it: `medcompute submit`, `watch`, `fetch`, `jobs`, `cancel`, `deliveries`, `inbox`,
`usage` and `usage invoice`, against a real server with two subscribers' keys."""

import csv
import io
import json
import time

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcompute.client.cli import main
from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CT = get_testdata_file("CT_small.dcm")


@pytest.fixture(scope="module")
def site(tmp_path_factory, server_thread):
    data = tmp_path_factory.mktemp("jobs-cli")
    keys = KeyStore(data)
    tokens = {name: keys.create(subscriber, roles)[1] for name, subscriber, roles in [
        ("admin", "operator", ["admin"]),
        ("hospital", "st-mary", ["process", "store"]),
        ("reader", "dr-lee", ["receive"]),
    ]}
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data, workers=1, gpu_workers=0)
    with server_thread(config) as server:
        server.tokens = tokens
        yield server


@pytest.fixture
def cli(site, capsys):
    def run(who, *args):
        code = main([*args, "--server", site.address, "--api-key", site.tokens[who]])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_submit_watch_fetch_a_dicom_job(cli, tmp_path):
    code, out, err = cli("hospital", "submit", CT, "--op", "gaussian:sigma_mm=1.5",
                         "--result", "dicom-file", "--label", "ct-tour")
    assert code == 0, err
    job_id = out.strip()
    assert len(job_id) == 32 and f"job {job_id}: " in err
    code, _, err = cli("hospital", "watch", job_id)
    assert code == 0 and f"job {job_id}: SUCCEEDED" in err
    assert "RUNNING" in err or "QUEUED" in err or "SUCCEEDED" in err
    target = tmp_path / "ct_smooth.dcm"
    code, _, err = cli("hospital", "fetch", job_id, "-o", str(target))
    assert code == 0, err
    ds = pydicom.dcmread(target)
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "gaussian" in ds.DerivationDescription
    code, out, _ = cli("hospital", "jobs", "--label", "ct-tour")
    assert code == 0 and job_id in out and "SUCCEEDED" in out
    code, out, _ = cli("hospital", "jobs", "--json", "--state", "succeeded")
    assert job_id in [j["job_id"] for j in json.loads(out)["jobs"]]


def test_submit_wait_writes_the_result_and_a_key_repeats_the_job(cli, tmp_path):
    src = tmp_path / "in.npy"
    np.save(src, np.arange(64, dtype=np.float32).reshape(8, 8))
    out_file = tmp_path / "out.npy"
    code, out, err = cli("hospital", "submit", str(src), "--op", "mean:size=3", "--key",
                         "cli-key-1", "--wait", "-o", str(out_file))
    assert code == 0, err
    first = out.strip()
    assert np.load(out_file).shape == (8, 8)
    code, out, _ = cli("hospital", "submit", str(src), "--op", "mean:size=3", "--key",
                       "cli-key-1", "-q")
    assert code == 0 and out.strip() == first


def test_cancel_from_the_command_line(cli, tmp_path):
    src = tmp_path / "vol.npy"
    np.save(src, np.random.default_rng(0).normal(size=(24, 96, 96)).astype(np.float32))
    args = ["--op", "median:size=5"] * 40
    code, out, _ = cli("hospital", "submit", str(src), *args, "--device", "cpu", "-q")
    assert code == 0
    code, out, _ = cli("hospital", "cancel", out.strip())
    assert code == 0 and "CANCELLED: cancelled by the subscriber" in out
    code, _, err = cli("hospital", "watch", out.split()[1].rstrip(":"))
    assert code == 1 and "CANCELLED" in err


def test_deliver_to_another_subscriber_and_fetch_from_the_inbox(cli, tmp_path):
    src = tmp_path / "img.npy"
    np.save(src, np.ones((16, 16), np.float32))
    code, out, err = cli("admin", "deliveries", "allow", "st-mary", "dr-lee")
    assert code == 0 and "st-mary may deliver results to dr-lee" in out
    code, out, _ = cli("admin", "deliveries", "list")
    assert "st-mary -> dr-lee" in out
    code, out, err = cli("hospital", "submit", str(src), "--op", "gaussian:sigma=1", "--to",
                         "dr-lee", "--label", "second read", "--wait")
    assert code == 0, err
    job_id = out.strip()
    code, out, _ = cli("reader", "inbox", "--unfetched")
    assert code == 0 and job_id in out and "from st-mary" in out and "second read" in out
    code, out, _ = cli("reader", "inbox", "--watch", "--json", "--timeout", "3")
    # --watch keeps streaming until stopped; the timeout ends it here, after the backlog.
    lines = [json.loads(line) for line in out.splitlines()]
    assert job_id in [d["job_id"] for d in lines]
    target = tmp_path / "delivered.npy"
    code, _, err = cli("reader", "fetch", job_id, "-o", str(target))
    assert code == 0, err
    np.testing.assert_allclose(np.load(target), 1.0, rtol=1e-6)
    code, out, _ = cli("hospital", "jobs", "--json")
    [mine] = [j for j in json.loads(out)["jobs"] if j["job_id"] == job_id]
    assert mine["delivery"] == "DELIVERY_STATE_FETCHED" and mine["destination"] == "dr-lee"
    code, _, err = cli("hospital", "inbox")
    assert code == 6 and "PERMISSION_DENIED" in err


def test_usage_and_the_invoice_of_this_month(cli, site):
    month = time.strftime("%Y-%m", time.gmtime())
    code, out, err = cli("hospital", "usage", "--group-by", "operation")
    assert code == 0, err
    assert "gaussian" in out
    code, out, err = cli("hospital", "usage", "invoice", "--month", month, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    jobs = [r for r in rows if r["item"] == "job"]
    assert [r["subscriber"] for r in jobs] == ["st-mary"]
    code, out, _ = cli("hospital", "usage", "--json")
    totals = json.loads(out)["totals"]
    assert float(jobs[0]["quantity"]) == int(totals["billable_jobs"])
    # Another subscriber's invoice is an administrator's business.
    code, _, err = cli("hospital", "usage", "invoice", "--month", month, "--all")
    assert code == 6 and "PERMISSION_DENIED" in err
    code, out, err = cli("admin", "usage", "invoice", "--month", month, "--all",
                         "--format", "json")
    assert code == 0, err
    assert "st-mary" in [s["subscriber"] for s in json.loads(out)["subscribers"]]
    with pytest.raises(SystemExit) as exit_:
        cli("hospital", "usage", "invoice", "--month", "2026-13")
    assert exit_.value.code == 2


def test_json_shapes_and_ids_only(cli, tmp_path):
    from medcompute.proto.v1 import jobs_pb2

    fields = {f.name for f in jobs_pb2.JobInfo.DESCRIPTOR.fields}
    src = tmp_path / "small.npy"
    np.save(src, np.ones((8, 8), np.float32))
    code, out, err = cli("hospital", "submit", str(src), "--op", "gaussian:sigma=1", "--json")
    assert code == 0, err
    job = json.loads(out)
    assert set(job) == fields and len(job["job_id"]) == 32
    assert job["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
    code, out, err = cli("hospital", "watch", job["job_id"], "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events and all(set(e) == {"job", "message"} for e in events)
    assert events[-1]["job"]["state"] == "JOB_STATE_SUCCEEDED" and err == ""
    code, out, _ = cli("hospital", "jobs", "-q")
    assert code == 0 and job["job_id"] in out.split()
    assert all(len(line) == 32 for line in out.splitlines())
    code, out, _ = cli("hospital", "jobs", "--json", "--limit", "1")
    assert set(json.loads(out)) == {"jobs", "next_page_token"}
    # A job that already succeeded is not cancelled: exit 1, the job as it is.
    code, out, _ = cli("hospital", "cancel", job["job_id"], "--json")
    assert code == 1 and json.loads(out)["state"] == "JOB_STATE_SUCCEEDED"
    code, out, _ = cli("hospital", "process", str(src), "--op", "gaussian:sigma=1", "-o",
                       str(tmp_path / "out.npy"), "-q")
    assert code == 0 and len(out.strip()) == 32 and "\n" not in out.strip()
    code, out, _ = cli("admin", "deliveries", "allow", "st-mary", "dr-lee", "--json")
    assert code == 0 and json.loads(out)["sender"] == "st-mary"
    code, out, _ = cli("admin", "deliveries", "list", "--json")
    assert {"sender": "st-mary", "recipient": "dr-lee"}.items() <= json.loads(out)[0].items()


def test_exit_statuses(cli, tmp_path):
    src = tmp_path / "small.npy"
    np.save(src, np.ones((8, 8), np.float32))
    out = str(tmp_path / "out.npy")
    code, _, err = cli("hospital", "process", str(src), "--op", "gausian:sigma=1", "-o", out)
    assert code == 2 and "unknown operation" in err                  # usage
    code, _, err = cli("hospital", "process", str(src), "--op", "gaussian:sigma=-1", "-o", out)
    assert code == 3 and "INVALID_ARGUMENT" in err                   # server refused
    code, _, err = cli("hospital", "fetch", "f" * 32, "-o", out)
    assert code == 4 and "NOT_FOUND" in err                          # not found
    code, _, err = cli("reader", "submit", str(src), "--op", "gaussian:sigma=1")
    assert code == 6 and "PERMISSION_DENIED" in err                  # not allowed
