"""The registry's checks, without a cluster: what a wheel, its metadata and the caller's
fields must be, who may see, grant and download what, and a stored wheel whose bytes no
longer match its SHA-256."""

import asyncio
import io
import zipfile

import pytest

from medcompute.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    StorageFailure,
)
from medcompute.server.software import registry as reg
from medcompute.server.software.catalog import APPROVED, version_key
from medcompute.server.storage import software as table
from medcompute.server.storage.db import Database
from medcompute.server.storage.keys import Principal
from tests.software_helpers import build_wheel

pytestmark = pytest.mark.timeout(120)

ACME = Principal("acme", frozenset({"publisher"}))
ADMIN = Principal("operator", frozenset({"admin"}))
CLINIC = Principal("north-clinic", frozenset({"process"}))


@pytest.fixture
def registry(tmp_path, catalog_at):
    db = Database(catalog_at)
    r = reg.SoftwareRegistry(db, tmp_path / "data")
    yield r
    r.close()
    db.close()


def run(coro):
    return asyncio.run(coro)


def add(registry, wheel, **fields):
    values = dict(vendor="Acme", licence="MIT", fee_per_use=0.5) | fields
    return run(registry.add(ACME, wheel.name, wheel.read_bytes(), **values))


@pytest.mark.parametrize(("change", "field", "message"), [
    (dict(vendor=" "), "vendor", "required"),
    (dict(fee_per_use=-1.0), "fee_per_use", "expected a fee >= 0"),
    (dict(fee_per_use=float("nan")), "fee_per_use", "expected a fee >= 0"),
    (dict(vendor="x" * 201), "vendor", "at most 200 characters"),
])
def test_the_callers_fields_are_checked(registry, tmp_path, change, field, message):
    with pytest.raises(InvalidArgument) as caught:
        add(registry, build_wheel(tmp_path), **change)
    assert caught.value.field == field and message in caught.value.message


def test_the_licence_defaults_to_the_wheels_metadata(registry, tmp_path):
    assert add(registry, build_wheel(tmp_path), licence="").licence == "MIT"


def test_a_wheel_over_the_limit_is_resource_exhausted(registry):
    with pytest.raises(ResourceExhausted, match="at most 3145728"):
        run(registry.add(ACME, "a-1-py3-none-any.whl", b"0" * (reg.MAX_WHEEL_BYTES + 1),
                         vendor="Acme", licence="MIT", fee_per_use=0))


def _zip(files: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(("filename", "data", "field", "message"), [
    ("a-1-py3-none-any.whl", b"", "wheel", "required"),
    ("a.zip", _zip({}), "filename", "expected a wheel's file name"),
    ("a-1-py3-none-any.whl", _zip({}), "wheel", "one *.dist-info/METADATA, found 0"),
    ("a-1-py3-none-any.whl", _zip({"a-1.dist-info/METADATA": "Name: a\nVersion: \n"}),
     "wheel", "gives the version"),
    ("a-1-py3-none-any.whl", _zip({"a-1.dist-info/METADATA": "Name: !\nVersion: 1\n"}),
     "wheel", "names the package"),
    ("b-1-py3-none-any.whl", _zip({"a-1.dist-info/METADATA": "Name: a\nVersion: 1\n"}),
     "filename", "does not name the package 'a'"),
])
def test_what_is_not_a_wheel_is_refused(registry, filename, data, field, message):
    with pytest.raises(InvalidArgument) as caught:
        run(registry.add(ACME, filename, data, vendor="Acme", licence="MIT", fee_per_use=0))
    assert caught.value.field == field and message in caught.value.message


def test_a_package_that_cannot_be_loaded_is_refused_with_the_reason(registry, tmp_path):
    broken = build_wheel(tmp_path, name="broken", source="raise ImportError('no numpy 9')\n",
                         operations={"op": "op"})
    with pytest.raises(InvalidArgument, match="could not be loaded: ImportError: no numpy 9"):
        add(registry, broken)


def test_visibility_grants_and_downloads(registry, tmp_path):
    row = add(registry, build_wheel(tmp_path))
    assert [r.version for r in run(registry.list(ACME))] == ["1.0"]
    assert run(registry.list(CLINIC)) == []               # pending: its publisher's only
    with pytest.raises(NotFound):
        run(registry.info(CLINIC, "sharpen"))
    with pytest.raises(NotFound):
        run(registry.grant(CLINIC, "sharpen", "north-clinic"))
    with pytest.raises(NotFound):
        run(registry.grant(ACME, "nothing", "north-clinic"))
    with pytest.raises(InvalidArgument) as caught:
        run(registry.grant(ACME, "sharpen", "not a name"))
    assert caught.value.field == "subscriber"
    run(registry.approve("sharpen", "1.0"))
    assert run(registry.info(CLINIC, "Sharpen")).status == "approved"   # names normalised
    with pytest.raises(PermissionDenied, match="only the publisher"):
        run(registry.grant(CLINIC, "sharpen", "north-clinic"))
    with pytest.raises(PermissionDenied, match="not granted"):
        run(registry.download(CLINIC, "sharpen", "1.0"))
    run(registry.grant(ACME, "sharpen", "north-clinic"))
    got, data = run(registry.download(CLINIC, "sharpen", "1.0"))
    assert got.sha256 == row.sha256
    table.wheel_path(registry.data_dir, row.sha256).write_bytes(data + b"x")
    with pytest.raises(StorageFailure, match="does not match its SHA-256"):
        run(registry.download(CLINIC, "sharpen", "1.0"))
    [(name, version, uses, downloads, fees)] = run(registry.uses(ACME))
    assert (name, version, uses, downloads, fees) == ("sharpen", "1.0", 0, 1, 0.0)
    assert run(registry.uses(Principal("other", frozenset({"publisher"})))) == []


def test_the_resolver_finds_the_newest_approved_version(registry, tmp_path):
    add(registry, build_wheel(tmp_path / "a", version="1.9"))
    add(registry, build_wheel(tmp_path / "b", version="1.10"))
    with pytest.raises(FailedPrecondition, match="no approved version"):
        APPROVED.find("sharpen", "", "op")
    run(registry.approve("sharpen", "1.9"))
    run(registry.approve("sharpen", "1.10"))
    assert APPROVED.find("sharpen", "", "op").version == "1.10"
    run(registry.retire("sharpen", "1.10"))
    assert APPROVED.find("sharpen", "", "op").version == "1.9"
    with pytest.raises(NotFound) as caught:
        APPROVED.find("sharpen", "3", "op")
    assert caught.value.field == "op.version" and "1.9, 1.10" in caught.value.message


def test_versions_order_numerically():
    assert sorted(["1.10", "1.9", "1.9.1", "2.0rc1", "1"], key=version_key) == [
        "1", "1.9", "1.9.1", "1.10", "2.0rc1"]


def test_a_closed_registry_hands_the_lookups_back_to_the_one_bound_before(registry, tmp_path):
    add(registry, build_wheel(tmp_path / "a"))
    run(registry.approve("sharpen", "1.0"))
    db = Database(tmp_path / "other")
    other = reg.SoftwareRegistry(db, tmp_path / "other")
    try:
        with pytest.raises(NotFound):           # the other server's catalog has none
            APPROVED.find("sharpen", "", "op")
        assert APPROVED.approved() == []
    finally:
        other.close()
        db.close()
    assert APPROVED.find("sharpen", "", "op").version == "1.0"
    assert APPROVED.wheel("ab").endswith("software/ab.whl")


def test_a_retirement_by_another_server_is_read_again(registry, tmp_path, catalog_at,
                                                     monkeypatch):
    from medcompute.server.software import catalog

    add(registry, build_wheel(tmp_path / "a"))
    run(registry.approve("sharpen", "1.0"))
    assert APPROVED.find("sharpen", "1.0", "op").status == "approved"
    elsewhere = Database(catalog_at)              # another server's connection to the catalog
    try:
        elsewhere.transaction(table.set_status, "sharpen", "1.0", "retired", 0.0)
    finally:
        elsewhere.close()
    monkeypatch.setattr(catalog, "FRESH_SECONDS", 0.0)
    with pytest.raises(FailedPrecondition, match="is retired"):
        APPROVED.find("sharpen", "1.0", "op")
