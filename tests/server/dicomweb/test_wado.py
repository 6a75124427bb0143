"""WADO-RS content negotiation, window parameters and multipart bodies, alone."""

from __future__ import annotations

import pytest

from medcompute.server.dicomweb.door import HttpError
from medcompute.server.dicomweb.wado import accepts, multipart, syntax_asked, window_of

EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.mark.parametrize(("accept", "got"), [
    ("", "application/dicom"), ("*/*", "application/dicom"),
    ('multipart/related; type="application/dicom"', "application/dicom"),
    (f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT}',
     "application/dicom"),
    ('multipart/related; type="application/dicom"; transfer-syntax=*', "application/dicom"),
    ('application/pdf, multipart/related; type="application/*"', "application/dicom"),
])
def test_instances_accept(accept, got):
    assert accepts(accept, ("application/dicom",), syntax=EXPLICIT,
                   multipart_only=True) == got


@pytest.mark.parametrize("accept", [
    "application/dicom",                   # a bare part: instances travel as multipart
    'multipart/related; type="application/octet-stream"',
])
def test_instances_not_offered(accept):
    with pytest.raises(HttpError) as err:
        accepts(accept, ("application/dicom",), syntax=EXPLICIT, multipart_only=True)
    assert (err.value.status, err.value.field) == (406, "Accept")
    assert EXPLICIT in err.value.message


def test_rendered_accept():
    kinds = ("image/jpeg", "image/png")
    assert accepts("image/png", kinds) == "image/png"
    assert accepts("image/*", kinds) == "image/jpeg"
    assert accepts("text/html, image/png;q=0.9", kinds) == "image/png"
    with pytest.raises(HttpError):
        accepts("image/gif", kinds)


def test_window():
    assert window_of("") is None
    assert window_of("40,400") == (40.0, 400.0, "linear")
    assert window_of(" -600 , 1500 , sigmoid") == (-600.0, 1500.0, "sigmoid")
    for bad in ("40", "40,0", "a,b", "40,400,cubic"):
        with pytest.raises(HttpError) as err:
            window_of(bad)
        assert (err.value.status, err.value.field) == (400, "window")


def test_multipart_body():
    body = b"".join(multipart(iter([("a/b", b"one"), ("c/d", b"two")]), "BB"))
    assert body == (b"--BB\r\nContent-Type: a/b\r\n\r\none\r\n"
                    b"--BB\r\nContent-Type: c/d\r\n\r\ntwo\r\n--BB--\r\n")


@pytest.mark.parametrize(("accept", "got"), [
    ("", ""), ("*/*", ""), ('multipart/related; type="application/dicom"', ""),
    (f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT}', ""),
    ('multipart/related; type="application/dicom"; transfer-syntax=*', ""),
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90',
     "1.2.840.10008.1.2.4.90"),
    ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50, '
     'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.91',
     "1.2.840.10008.1.2.4.91"),
])
def test_transfer_syntax_asked(accept, got):
    assert syntax_asked(accept, EXPLICIT) == got


def test_transfer_syntax_not_offered():
    with pytest.raises(HttpError) as err:
        syntax_asked('multipart/related; type="application/dicom"; '
                     'transfer-syntax=1.2.840.10008.1.2.4.50', EXPLICIT)
    assert err.value.status == 406 and "1.2.840.10008.1.2.4.90" in err.value.message
