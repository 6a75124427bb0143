"""The committed stubs are what `make proto` generates from the .proto files."""

from pathlib import Path

from medcompute.proto import generate


def test_generated_stubs_are_not_stale(tmp_path):
    written = generate.generate(tmp_path)
    assert written, "nothing was generated"
    committed = Path(generate.DEFAULT_OUT)
    for fresh in written:
        current = committed / fresh.name
        assert current.exists(), f"{current} is missing: run `make proto`"
        assert current.read_text() == fresh.read_text(), \
            f"{current} is stale: run `make proto` and commit the result"
    generated = {p.name for p in committed.glob("*_pb2*.py*")}
    assert generated == {p.name for p in written}, "stray generated files: run `make proto`"


def test_stubs_import_under_the_namespaced_package():
    from medcompute.proto.v1 import processing_pb2, processing_pb2_grpc

    assert processing_pb2.DESCRIPTOR.package == "medcompute.v1"
    assert hasattr(processing_pb2_grpc, "ProcessingServiceStub")
