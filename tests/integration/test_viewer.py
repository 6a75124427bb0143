"""The OHIF Viewer (npm's @ohif/app, its built dist/) served from the HTTP port opens a
stored CT series and a processed-on-retrieve series in headless Chromium (Debian's
chromium and chromium-driver, driven by selenium); the console's log-in, job list and a
preview are checked in the same browser. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file

from medcompute.server.config import ServerConfig
from medcompute.server.storage.keys import KeyStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OHIF = Path(__file__).resolve().parents[2] / ".tools" / "ohif" / "dist"
CT5N = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests",
                    "98892001", "CT5N")
FILES = sorted(os.path.join(CT5N, f) for f in os.listdir(CT5N))
FIRST = pydicom.dcmread(FILES[0])
STUDY, SERIES = FIRST.StudyInstanceUID, FIRST.SeriesInstanceUID
MISSING = [what for what, there in (
    ("chromium and chromedriver (make browser)", shutil.which("chromium")
     and shutil.which("chromedriver")),
    ("the OHIF Viewer's dist/ (make ohif)", (OHIF / "index.html").is_file())) if not there]
if MISSING:
    pytest.skip("needs " + " and ".join(MISSING), allow_module_level=True)

from selenium import webdriver  # noqa: E402 - only once the browser is known to be there
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def web(server_thread, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("viewer-data")
    keys = KeyStore(data_dir)
    token = keys.create("a", "process,store,receive")[1]
    keys.close()
    config = ServerConfig(address="127.0.0.1:0", data_dir=data_dir, workers=1, http_port=0,
                          dicom_quiet_seconds=0.5, http_viewer=OHIF)
    with server_thread(config) as running:
        running.token = token
        running.base = f"http://127.0.0.1:{running.running.http_port}"
        auth = {"Authorization": f"Bearer {token}"}
        DICOMwebClient(running.base + "/dicomweb", headers=auth).store_instances(
            [pydicom.dcmread(f) for f in FILES])
        registry = running.running.dicom.registry
        deadline = time.monotonic() + 60
        while not [s for s in running.call(registry.list_series("a"))
                   if s.state == "complete"]:
            assert time.monotonic() < deadline, "the stored series did not complete"
            time.sleep(0.2)
        answer = requests.get(f"{running.base}/dicomweb/studies/{STUDY}/series/{SERIES}/"
                              "processed", params={"op": "gaussian:sigma=1"}, headers=auth,
                              timeout=120)
        assert answer.status_code == 200, answer.text
        running.processed = answer.headers["Content-Location"].rsplit("/", 1)[-1]
        running.job = answer.headers["Medcompute-Job"]
        yield running


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--use-gl=angle", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _responses(driver) -> dict[str, int]:
    """URL -> HTTP status of the responses the browser got since the last look."""
    out = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            out[response["url"]] = response["status"]
    return out


def _frames_of(driver, series: str, timeout: float = 120) -> list[str]:
    """Wait until the browser has fetched frames of ``series``; their URLs."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.update(_responses(driver))
        frames = [u for u, status in seen.items()
                  if f"/series/{series}/" in u and "/frames/" in u and status == 200]
        if frames:
            return frames
        time.sleep(0.5)
    pytest.fail(f"the viewer fetched no frame of the series; it got {sorted(seen)[-20:]}")


def test_console_then_viewer(web, browser, tmp_path):
    wait = WebDriverWait(browser, 60)
    browser.get(f"{web.base}/console/login")
    browser.find_element(By.ID, "key").send_keys(web.token)
    browser.find_element(By.ID, "login").click()
    wait.until(lambda d: d.current_url.endswith("/console/jobs"))
    table = browser.find_element(By.ID, "jobs").text
    assert web.job in table and "SUCCEEDED" in table
    browser.save_screenshot(str(tmp_path / "console-jobs.png"))
    browser.get(f"{web.base}/console/studies")
    wait.until(lambda d: d.execute_script(
        "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
        == 2)                                   # the CT series and the processed one
    browser.save_screenshot(str(tmp_path / "console-studies.png"))

    _responses(browser)
    browser.get(f"{web.base}/viewer?StudyInstanceUIDs={STUDY}&SeriesInstanceUIDs={SERIES}")
    frames = _frames_of(browser, SERIES)
    assert frames
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "canvas"))
    time.sleep(1)   # not an assertion: lets the frame reach the canvas for the screenshot
    browser.save_screenshot(str(tmp_path / "ohif-ct.png"))

    browser.get(f"{web.base}/viewer?StudyInstanceUIDs={STUDY}"
                f"&SeriesInstanceUIDs={web.processed}")
    assert _frames_of(browser, web.processed)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "canvas"))
    time.sleep(1)
    browser.save_screenshot(str(tmp_path / "ohif-processed.png"))
    for name in ("console-jobs", "console-studies", "ohif-ct", "ohif-processed"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
