"""Hard copy by image id, printed on dcmtk's dcmprscp (a real Basic Grayscale Print
Management SCP, started here with its own configuration on a free loopback port): each
image box it stores holds the stored slice after the 8- or 12-bit conversion."""

import socket
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import pydicom
import pytest

from medcompute.client import ServiceError
from medcompute.server.dicomnet.films import to_print

# dcmprscp comes with dcmtk, which `make peers` (.ci/install-peers) installs.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONFIG = r"""[[GENERAL]]
[PRINT]
Directory = {spool}
DeletePrintJobs = false
AlwaysDeleteTerminateJobs = false
[DATABASE]
Directory = {db}
[[COMMUNICATION]]
[PRINTER]
Aetitle = PRINTSCP
Description = test print SCP
Hostname = localhost
Port = {port}
Type = LOCALPRINTER
DisplayFormat = 1,1\1,2\2,1\2,2\3,3
FilmSizeID = 8INX10IN\14INX17IN\A4
MediumType = PAPER\CLEAR FILM\BLUE FILM
FilmDestination = MAGAZINE\PROCESSOR
MagnificationType = REPLICATE\BILINEAR\CUBIC\NONE
MaxDensity = 320
MinDensity = 20
MaxPDU = 32768
ImplicitOnly = false
DisableNewVRs = false
Supports12Bit = true
SupportsPresentationLUT = false
SupportsImageSize = false
SupportsDecimateCrop = false
SupportsTrim = false
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def printer(tmp_path_factory):
    root = tmp_path_factory.mktemp("printer")
    (root / "db").mkdir()
    (root / "spool").mkdir()
    port = _free_port()
    config = root / "print.cfg"
    config.write_text(CONFIG.format(spool=root / "spool", db=root / "db", port=port))
    log = open(root / "scp.log", "w")
    proc = subprocess.Popen(["dcmprscp", "-c", str(config), "-p", "PRINTER"], cwd=root,
                            stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while True:             # listening: a connection is accepted
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"dcmprscp did not start:\n{(root / 'scp.log').read_text()}")
            time.sleep(0.1)
    yield port, root / "db"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(11)
    return (rng.normal(1000, 300, (6, 40, 48)).clip(0, 4000)).astype(np.uint16)


@pytest.fixture(scope="module")
def stored(server, volume, printer):
    from medcompute.client import Client

    with Client(server.address, timeout=120) as c:
        c.dicom.register_node("film", "PRINTSCP", "127.0.0.1", printer[0])
        c.dicom.register_node("nowhere", "PRINTSCP", "127.0.0.1", _free_port())
        return c.store.register(volume, spacing=(2.0, 0.5, 0.5)).image_id


def _sheets(db: Path, before: set) -> list[list[pydicom.Dataset]]:
    """The sheets dcmprscp stored since ``before`` (its files then): each the film box's
    Stored Print object and its image boxes' Hardcopy Grayscale images by position."""
    images = {}
    for path in db.glob("HG_*.dcm"):
        if path not in before:
            hg = pydicom.dcmread(path)
            images[hg.SOPInstanceUID] = hg
    sheets = []
    for path in sorted(set(db.glob("SP_*.dcm")) - before):
        sp = pydicom.dcmread(path)
        boxes = sorted((int(item.ImageBoxPosition),
                        item.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
                       for item in sp.ImageBoxContentSequence)
        sheets.append((sp, [images[uid] for _, uid in boxes]))
    return sheets


def test_printing_slices_stores_each_slice_in_its_image_box(client, stored, volume, printer):
    before = set(printer[1].iterdir())
    job = client.printing.print_image(stored, "film", display_format="STANDARD\\2,2",
                                      film_size="14INX17IN", orientation="landscape",
                                      slices=[0, 2, 3, 5, 1])
    assert (job.status, job.sheets, job.film_size, job.orientation) == (
        "DONE", 2, "14INX17IN", "LANDSCAPE")
    assert job.printer_status == "NORMAL"
    sheets = sorted(_sheets(printer[1], before), key=lambda sheet: -len(sheet[1]))
    assert [len(boxes) for _, boxes in sheets] == [4, 1]
    for (sp, boxes), slices in zip(sheets, ([0, 2, 3, 5], [1])):
        [film_box] = sp.FilmBoxContentSequence
        assert (film_box.ImageDisplayFormat, film_box.FilmOrientation, film_box.FilmSizeID) \
            == ("STANDARD\\2,2", "LANDSCAPE", "14INX17IN")
        for hg, s in zip(boxes, slices):
            assert (hg.BitsStored, hg.pixel_array.dtype) == (8, np.uint8)
            np.testing.assert_array_equal(hg.pixel_array, to_print(volume[s], 8))


def test_a_mip_in_12_bits(client, stored, volume, printer):
    before = set(printer[1].glob("HG_*.dcm"))
    job = client.printing.print_image(stored, "film", mip=True, bits=12, copies=2)
    assert (job.status, job.sheets, job.mip, job.bits) == ("DONE", 2, True, 12)
    [path] = set(printer[1].glob("HG_*.dcm")) - before
    hg = pydicom.dcmread(path)
    assert hg.BitsStored == 12
    np.testing.assert_array_equal(hg.pixel_array, to_print(volume.max(axis=0), 12))


def test_the_jobs_are_kept_with_their_sheets(client, stored):
    jobs = client.printing.jobs()
    assert [j.sheets for j in jobs[:2]] == [2, 2]
    assert all(j.image_id == stored for j in jobs)


@pytest.mark.parametrize(("options", "field"), [
    (dict(display_format="CUSTOM\\1"), "display_format"),
    (dict(film_size="POSTER"), "film_size"),
    (dict(orientation="sideways"), "orientation"),
    (dict(copies=100), "copies"),
    (dict(bits=10), "bits"),
    (dict(slices=[6]), "slices[0]"),
    (dict(slices=[1], mip=True), "mip"),
])
def test_format_information_is_checked_naming_the_field(client, stored, options, field):
    with pytest.raises(ServiceError) as caught:
        client.printing.print_image(stored, "film", **options)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details.startswith(f"{field}:")


def test_an_unknown_printer_or_image_is_not_found(client, stored):
    with pytest.raises(ServiceError) as caught:
        client.printing.print_image(stored, "no-such-node")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND and "printer" in caught.value.details
    with pytest.raises(ServiceError) as caught:
        client.printing.print_image("0" * 32, "film")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_a_printer_registered_with_tls_is_refused_for_now(client, stored, tmp_path):
    from medcompute.client.dicom import tls
    from tests.dicom_tls import Authority

    ca = Authority(tmp_path / "pki")
    client.dicom.register_node("secure", "PRINTSCP", "127.0.0.1", 11112,
                               tls=tls(ca_pem=ca.ca.read_text()))
    with pytest.raises(ServiceError) as caught:
        client.printing.print_image(stored, "secure")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details.startswith("printer:")


def test_the_print_command(server, stored, capsys):
    from medcompute.client.cli import main

    code = main(["print", stored, "--printer", "film", "--slices", "1,4", "--format",
                 "STANDARD\\1,2", "--server", server.address])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "DONE, 1 sheet(s) of 8INX10IN portrait, STANDARD\\1,2, slices 1,4" in out
    assert main(["print", stored, "--printer", "film", "--slices", "a",
                 "--server", server.address]) == 2
    code = main(["print", stored, "--printer", "nope", "--server", server.address])
    assert code == 4 and "NOT_FOUND: printer:" in capsys.readouterr().err


def test_a_printer_that_does_not_answer_fails_the_job_with_the_reason(client, stored):
    with pytest.raises(ServiceError) as caught:
        client.printing.print_image(stored, "nowhere", slices=[0])
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "unreachable" in caught.value.details
    assert client.printing.jobs()[0].status == "FAILED"


def test_the_printed_sheets_are_metered_on_the_invoice(server, client, stored):
    from medcompute.server.billing.service import BillingService
    from medcompute.server.billing.tariff import parse_tariff
    from medcompute.server.storage.keys import Principal

    tariff = parse_tariff('name = "t"\ncurrency = "EUR"\n[prices]\njob = 0\nimage = 0\n'
                          'megabyte = 0\ncpu_second = 0\ngpu_second = 0\n'
                          'gigabyte_month = 0\nprinted_sheet = 0.5\n')
    billing = BillingService(server.running.db, tariff)
    try:
        month = time.strftime("%Y-%m", time.gmtime())
        me = Principal(server.config.subscriber, frozenset({"admin"}))
        inv = server.call(billing.invoice(me, month))
    finally:
        billing.close()
    [sub] = inv["subscribers"]
    line = next(line for line in sub["lines"] if line["item"] == "printed_sheet")
    printed = sum(j.sheets for j in client.printing.jobs())
    assert printed >= 4 and line["quantity"] == printed


def test_the_printed_objects_pass_the_standards_validator(client, stored, printer):
    """What the print SCP kept of a sheet (its Stored Print and its Hardcopy Grayscale
    images, made from the image boxes this service sent) has no error by dciodvfy but
    that it does not know these two retired IODs (dcmprscp's own storage objects)."""
    from tests import dciodvfy

    before = set(printer[1].iterdir())
    job = client.printing.print_image(stored, "film", display_format="STANDARD\\2,1",
                                      slices=[0, 1])
    assert job.status == "DONE"
    made = sorted(set(printer[1].glob("*.dcm")) - before)
    assert {p.name[:3] for p in made} == {"SP_", "HG_"}
    for path in made:
        errors = dciodvfy.check(path.read_bytes()).errors
        assert errors == {"Error - Information Object Not found"}, (path.name, errors)
