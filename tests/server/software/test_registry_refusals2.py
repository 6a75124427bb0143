"""The software registry's refusals (software/registry.py, software/catalog.py), each with
its field and its whole message: a wheel that is not one, a version registered twice, a
version that is retired, unknown or not approved, and who may grant and download what."""

import asyncio
import io
import zipfile

import pytest

from medcompute.server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from medcompute.server.software import registry as reg
from medcompute.server.software.catalog import APPROVED
from medcompute.server.storage.db import Database
from medcompute.server.storage.keys import Principal
from tests.software_helpers import build_wheel

pytestmark = pytest.mark.timeout(120)

ACME = Principal("acme", frozenset({"publisher"}))
ADMIN = Principal("operator", frozenset({"admin"}))
CLINIC = Principal("north-clinic", frozenset({"process"}))
FIELDS = dict(vendor="Acme", licence="MIT", fee_per_use=0.5)


@pytest.fixture
def registry(tmp_path):
    db = Database(tmp_path / "data")
    r = reg.SoftwareRegistry(db, tmp_path / "data")
    yield r
    r.close()
    db.close()


def run(coro):
    return asyncio.run(coro)


def add(registry, wheel, **fields):
    return run(registry.add(ACME, wheel.name, wheel.read_bytes(), **(FIELDS | fields)))


def _zip(files: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def _refused(error, coro, field, message):
    with pytest.raises(error) as caught:
        run(coro)
    assert caught.value.field == field
    assert caught.value.message == message


TWO_METADATA = _zip({"a-1.dist-info/METADATA": "Name: a\nVersion: 1\n",
                     "b-1.dist-info/METADATA": "Name: b\nVersion: 1\n"})


@pytest.mark.parametrize(("filename", "data", "field", "message"), [
    ("scan-1.0-py3-none-any.whl", b"PK\x03\x04 truncated", "wheel",
     "expected a wheel (a zip file); this is not one"),
    ("a-1-py3-none-any.whl", TWO_METADATA, "wheel",
     "expected a wheel with one *.dist-info/METADATA, found 2"),
    ("a-1-py3-none-any.whl", _zip({"a-1.dist-info/METADATA": "Name: Ünïcode\nVersion: 1\n"}),
     "wheel", "the wheel's metadata names the package 'ünïcode'; "
     "expected letters, digits, '.', '-' or '_'"),
    ("a-1-py3-none-any.whl", _zip({"a-1.dist-info/METADATA": "Name: a\nVersion: 1 beta\n"}),
     "wheel", "the wheel's metadata gives the version '1 beta'"),
    ("a-1-py3-none-any.whl", b"", "wheel", "required: the wheel's bytes"),
    ("sharpen.whl", _zip({}), "filename",
     "expected a wheel's file name, NAME-VERSION-PY-ABI-PLATFORM.whl"),
])
def test_what_is_not_a_wheel_is_refused_with_the_whole_message(registry, filename, data,
                                                               field, message):
    _refused(InvalidArgument, registry.add(ACME, filename, data, **FIELDS), field, message)


def test_a_wheel_over_the_limit_says_its_size_and_the_limit(registry):
    data = b"0" * (reg.MAX_WHEEL_BYTES + 10)
    _refused(ResourceExhausted, registry.add(ACME, "a-1-py3-none-any.whl", data, **FIELDS),
             "wheel", f"the wheel has {reg.MAX_WHEEL_BYTES + 10} bytes; at most "
             f"{reg.MAX_WHEEL_BYTES} are accepted")


@pytest.mark.parametrize(("change", "field", "message"), [
    (dict(fee_per_use=-0.25), "fee_per_use", "expected a fee >= 0, got -0.25"),
    (dict(fee_per_use=float("inf")), "fee_per_use", "expected a fee >= 0, got inf"),
    (dict(licence="L" * 250), "licence", "at most 200 characters, got 250"),
])
def test_the_fee_and_the_licence_are_refused_with_the_value(registry, tmp_path, change,
                                                            field, message):
    wheel = build_wheel(tmp_path)
    _refused(InvalidArgument, registry.add(ACME, wheel.name, wheel.read_bytes(),
                                           **(FIELDS | change)), field, message)


def test_a_version_registered_twice_is_already_exists(registry, tmp_path):
    wheel = build_wheel(tmp_path)
    add(registry, wheel)
    again = build_wheel(tmp_path / "rebuilt", source="# rebuilt\n", operations={})
    _refused(AlreadyExists, registry.add(ACME, again.name, again.read_bytes(), **FIELDS),
             "wheel", "sharpen 1.0 is registered; a new wheel needs a new version")


def test_a_wheel_without_operations_is_refused(registry, tmp_path):
    wheel = build_wheel(tmp_path, name="empty", source="x = 1\n", operations={})
    _refused(InvalidArgument, registry.add(ACME, wheel.name, wheel.read_bytes(), **FIELDS),
             "wheel", "the wheel declares no operations: expected entry points in the group "
             "'medcompute.operations'")


def test_an_unknown_or_retired_version_is_refused(registry, tmp_path):
    add(registry, build_wheel(tmp_path))
    _refused(NotFound, registry.approve("sharpen", "2.0"), "version",
             "no version '2.0' of package 'sharpen'")
    _refused(NotFound, registry.info(CLINIC, "sharpen"), "name",
             "no package 'sharpen' you may see")
    _refused(NotFound, registry.info(ACME, "sharpen", "2.0"), "version",
             "no version '2.0' of package 'sharpen' you may see")
    run(registry.retire("sharpen", "1.0"))
    _refused(FailedPrecondition, registry.approve("sharpen", "1.0"), "version",
             "sharpen 1.0 is retired; register a new version instead")


def test_who_may_grant(registry, tmp_path):
    add(registry, build_wheel(tmp_path))
    _refused(NotFound, registry.grant(CLINIC, "sharpen", "north-clinic"), "name",
             "no package 'sharpen' you may see")
    _refused(NotFound, registry.grant(ADMIN, "nothing-here", "north-clinic"), "name",
             "no package 'nothing-here'")
    run(registry.approve("sharpen", "1.0"))
    _refused(PermissionDenied, registry.grant(CLINIC, "sharpen", "north-clinic"), None,
             "only the publisher of 'sharpen' grants it")


def test_who_may_download_what(registry, tmp_path):
    add(registry, build_wheel(tmp_path))
    _refused(NotFound, registry.download(CLINIC, "sharpen", "1.0"), "version",
             "no version '1.0' of package 'sharpen'")      # pending: not shown to others
    _refused(FailedPrecondition, registry.download(ACME, "sharpen", "1.0"), "version",
             "sharpen 1.0 is pending; only approved versions are delivered")
    run(registry.approve("sharpen", "1.0"))
    _refused(PermissionDenied, registry.download(CLINIC, "sharpen", "1.0"), None,
             "sharpen is not granted to this subscriber; its publisher grants it "
             "(`medcompute software grant`)")


def test_the_resolver_refuses_naming_the_operations_field(registry, tmp_path):
    add(registry, build_wheel(tmp_path / "a", version="1.0"))
    _refused_sync(NotFound, lambda: APPROVED.find("blur-pro", "", "pipeline[0]"),
                 "pipeline[0].package", "no software package 'blur-pro'; "
                 "`medcompute software list` shows the approved ones")
    _refused_sync(FailedPrecondition, lambda: APPROVED.find("sharpen", "", "pipeline[0]"),
                 "pipeline[0].package", "package 'sharpen' has no approved version")
    _refused_sync(FailedPrecondition, lambda: APPROVED.find("sharpen", "1.0", "pipeline[0]"),
                 "pipeline[0].version",
                 "version '1.0' of 'sharpen' is pending; only approved versions run")
    run(registry.approve("sharpen", "1.0"))
    _refused_sync(NotFound, lambda: APPROVED.find("sharpen", "1.1", "pipeline[0]"),
                 "pipeline[0].version", "package 'sharpen' has no version '1.1'; it has 1.0")


def _refused_sync(error, call, field, message):
    with pytest.raises(error) as caught:
        call()
    assert caught.value.field == field
    assert caught.value.message == message
