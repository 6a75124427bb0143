"""`medcompute store adopt` against a running `medcompute serve`: an image registered
before the first key (subscriber `local`) is no key's subscriber's until an administrator
hands it over on the server's machine; then the subscriber sees, fetches and is charged
for it."""

from __future__ import annotations

import json

import pytest
from pydicom.data import get_testdata_file

from medcompute.client import exits
from medcompute.client.cli import main
from tests.served import Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_images_registered_before_the_first_key_are_handed_to_a_subscriber(tmp_path, capsys):
    data = str(tmp_path / "data")
    served = Served(tmp_path / "data", tmp_path / "server.log")
    try:
        s = ("--server", served.address)
        code, out, err = _cli(capsys, "store", "put", get_testdata_file("CT_small.dcm"), "-q",
                              *s)
        assert code == 0, err
        image_id = out.strip()
        code, admin, _ = _cli(capsys, "keys", "create", "--subscriber", "operator", "--roles",
                              "admin", "--data-dir", data, "-q")
        code, hospital, _ = _cli(capsys, "keys", "create", "--subscriber", "st-mary",
                                 "--roles", "process,store", "--data-dir", data, "-q")
        admin_key, hospital_key = ("--api-key", admin.strip()), ("--api-key", hospital.strip())
        code, _, err = _cli(capsys, "store", "info", image_id, *s, *hospital_key)
        assert code == exits.NOT_FOUND, err
        code, _, err = _cli(capsys, "store", "adopt", "st-mary", *s, *hospital_key)
        assert code == exits.DENIED and "PERMISSION_DENIED" in err, err

        code, out, err = _cli(capsys, "store", "adopt", "st-mary", *s, *admin_key)
        assert code == 0, err
        assert out == "handed 1 image(s) of local to st-mary\n"
        code, out, err = _cli(capsys, "store", "info", image_id, *s, *hospital_key)
        assert code == 0, err
        assert json.loads(out)["image_id"] == image_id
        code, _, err = _cli(capsys, "store", "get", image_id, "-o", str(tmp_path / "ct.dcm"),
                            *s, *hospital_key)
        assert code == 0, err
        code, out, err = _cli(capsys, "store", "usage", "--json", *s, *hospital_key)
        assert code == 0, err
        assert int(json.loads(out)[0]["used_bytes"]) > 0
        code, out, _ = _cli(capsys, "store", "adopt", "st-mary", "--json", *s, *admin_key)
        assert json.loads(out) == {"subscriber": "st-mary", "from": "local", "image_ids": []}
        code, _, err = _cli(capsys, "store", "adopt", "not a name", *s, *admin_key)
        assert code == exits.SERVER and "INVALID_ARGUMENT: subscriber:" in err, err

        # On the server's machine, without a key (--data-dir), from another subscriber.
        code, out, err = _cli(capsys, "store", "adopt", "st-luke", "--from", "st-mary",
                              "--data-dir", data)
        assert code == 0, err
        assert out == "handed 1 image(s) of st-mary to st-luke\n"
        code, _, err = _cli(capsys, "store", "info", image_id, *s, *hospital_key)
        assert code == exits.NOT_FOUND, err
        code, _, err = _cli(capsys, "store", "adopt", "not a name", "--data-dir", data)
        assert code == exits.USAGE and "subscriber:" in err, err
    finally:
        served.stop()
