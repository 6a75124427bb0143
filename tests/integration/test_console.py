"""The console on the HTTP port, with a plain HTTP client keeping its cookie: log-in with
an API key, jobs, deliveries, usage and invoice, studies with previews, a processing
started from the page; a subscriber sees only its own; forms need the session's token."""

from __future__ import annotations

import os
import re
import time

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file

from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")
FILES = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
FIRST = pydicom.dcmread(FILES[0])


@pytest.fixture(scope="module")
def web(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("console-data")
    keys = KeyStore(data_dir)
    tokens = {name: keys.create(name, "process,store,receive")[1] for name in ("a", "b")}
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1, http_port=0,
                          dicom_quiet_seconds=0.5)
    with server_thread(config) as running:
        running.tokens = tokens
        running.base = f"http://127.0.0.1:{running.running.http_port}"
        DICOMwebClient(running.base + "/dicomweb", headers={
            "Authorization": f"Bearer {tokens['a']}"}).store_instances(
                [pydicom.dcmread(f) for f in FILES])
        registry = running.running.dicom.registry
        deadline = time.monotonic() + 60
        while not [s for s in running.call(registry.list_series("a"))
                   if s.state == "complete"]:
            assert time.monotonic() < deadline, "the stored series did not complete"
            time.sleep(0.2)
        yield running


def _login(web, who: str) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{web.base}/console/login", data={"key": web.tokens[who]},
                          timeout=30)
    assert answer.status_code == 200 and answer.url.endswith("/console/jobs")
    return session


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_login_studies_preview_process_and_jobs(web):
    a = _login(web, "a")
    studies = a.get(f"{web.base}/console/studies", timeout=30)
    assert studies.status_code == 200
    assert "Doe" not in studies.text                 # no patient names on the page
    (src,) = re.findall(r'src="(/console/preview/[^"]+)"', studies.text)
    preview = a.get(web.base + src, timeout=30)
    assert preview.status_code == 200 and preview.content[:4] == b"\x89PNG"
    started = a.post(f"{web.base}/console/process", timeout=60, data={
        "csrf": _csrf(studies.text), "study": FIRST.StudyInstanceUID,
        "series": FIRST.SeriesInstanceUID, "ops": "gaussian:sigma=1; mip:axis=0"})
    assert started.status_code == 200, started.text
    job = re.search(r"Job (\w+) started", started.text).group(1)
    deadline = time.monotonic() + 120
    while True:
        jobs = a.get(f"{web.base}/console/jobs", timeout=30)
        row = next(r for r in jobs.text.split("<tr>") if job in r)
        if '"SUCCEEDED"' in row:
            break
        assert '"FAILED"' not in row, row
        assert 'http-equiv="refresh"' in jobs.text    # reloads while a job runs
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert "gaussian &gt; project" in row
    usage = a.get(f"{web.base}/console/usage", timeout=30)
    assert usage.status_code == 200 and 'id="total"' in usage.text
    deliveries = a.get(f"{web.base}/console/deliveries", timeout=30)
    assert deliveries.status_code == 200 and "Sent to DICOM nodes" in deliveries.text
    entries = web.call(web.running.guard.audit.alist(action="console.process"))
    assert [e.object_id for e in entries] == [job]


def test_another_subscriber_sees_nothing_of_a(web):
    b = _login(web, "b")
    studies = b.get(f"{web.base}/console/studies", timeout=30)
    assert "/console/preview/" not in studies.text
    preview = b.get(f"{web.base}/console/preview/{FIRST.StudyInstanceUID}/"
                    f"{FIRST.SeriesInstanceUID}", timeout=30)
    assert preview.status_code == 404
    jobs = b.get(f"{web.base}/console/jobs", timeout=30)
    assert '<span class="SUCCEEDED">' not in jobs.text
    refused = b.post(f"{web.base}/console/process", timeout=30, data={
        "csrf": _csrf(studies.text), "study": FIRST.StudyInstanceUID,
        "series": FIRST.SeriesInstanceUID, "ops": "mip"})
    assert refused.status_code == 404


def test_login_and_forms_are_checked(web):
    anonymous = requests.Session()
    answer = anonymous.get(f"{web.base}/", timeout=30)         # no viewer: the console
    assert answer.url.endswith("/console/login?next=/console/jobs")
    answer = anonymous.get(f"{web.base}/console/jobs", timeout=30)
    assert answer.url.endswith("/console/login?next=/console/jobs")
    bad = anonymous.post(f"{web.base}/console/login", data={"key": "mc_nope"}, timeout=30)
    assert bad.status_code == 401 and "not valid" in bad.text
    unseen = anonymous.get(f"{web.base}/console/preview/1/2", timeout=30)
    assert unseen.status_code == 401 and unseen.text == "log in first"
    a = _login(web, "a")
    forged = a.post(f"{web.base}/console/process", timeout=30, data={
        "csrf": "forged", "study": FIRST.StudyInstanceUID,
        "series": FIRST.SeriesInstanceUID, "ops": "mip"})
    assert forged.status_code == 403
    page = a.get(f"{web.base}/console/studies", timeout=30)
    bad_op = a.post(f"{web.base}/console/process", timeout=30, data={
        "csrf": _csrf(page.text), "study": FIRST.StudyInstanceUID,
        "series": FIRST.SeriesInstanceUID, "ops": "nope:x=1"})
    assert bad_op.status_code == 400 and "op[0]" in bad_op.text
    # The session also opens DICOMweb (a viewer served from this origin).
    assert len(a.get(f"{web.base}/dicomweb/studies", timeout=30).json()) == 1
    out = a.post(f"{web.base}/console/logout", data={"csrf": _csrf(page.text)}, timeout=30)
    assert out.url.endswith("/console/login")
    assert a.get(f"{web.base}/console/jobs", timeout=30).url.endswith(
        "/console/login?next=/console/jobs")
    assert a.get(f"{web.base}/dicomweb/studies", timeout=30).status_code == 401
