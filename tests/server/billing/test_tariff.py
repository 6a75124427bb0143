"""The tariff file: exact decimal prices, the shipped example, and an error naming each
wrong entry."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from medcompute.server.billing.tariff import ITEMS, TariffError, load_tariff, parse_tariff

GOOD = """
name = "test prices"
currency = "CHF"
decimals = 3

[prices]
job = 0.1
image = 0
megabyte = 0.0005
cpu_second = 0.0002
gpu_second = 2
gigabyte_month = 0.03
"""


def _with(key: str, value: str) -> str:
    """GOOD with one ``key = ...`` line (in its table) replaced."""
    lines = [f"{key} = {value}" if line.split(" = ")[0] == key else line
             for line in GOOD.splitlines()]
    return "\n".join(lines)


def test_prices_are_exact_decimals():
    t = parse_tariff(GOOD)
    assert (t.name, t.currency, t.decimals) == ("test prices", "CHF", 3)
    assert t.price("megabyte") == Decimal("0.0005")        # not 0.000500000000000000010...
    assert t.price("gpu_second") == Decimal(2) and t.price("image") == Decimal(0)
    assert set(t.prices) == set(ITEMS)


def test_decimals_default_to_two():
    assert parse_tariff(GOOD.replace("decimals = 3\n", "")).decimals == 2


def test_the_shipped_example_tariff_loads():
    t = load_tariff()
    assert t.currency and t.name
    assert all(t.price(item) >= 0 for item in ITEMS)


def test_a_file(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text(GOOD)
    assert load_tariff(path).price("job") == Decimal("0.1")
    assert load_tariff(str(path)).currency == "CHF"


@pytest.mark.parametrize(("text", "key", "expected"), [
    (_with("cpu_second", '"abc"'), "prices.cpu_second",
     "prices.cpu_second: expected a non-negative number, got 'abc'"),
    (_with("job", "-0.5"), "prices.job", "prices.job: expected a non-negative number, got -0.5"),
    (_with("gpu_second", "nan"), "prices.gpu_second", "expected a non-negative number, got NaN"),
    (_with("image", "inf"), "prices.image", "expected a non-negative number, got Infinity"),
    (_with("megabyte", "true"), "prices.megabyte", "got True"),
    (_with("gigabyte_month", "[1, 2]"), "prices.gigabyte_month", "got [1, 2]"),
    (GOOD.replace("gpu_second = 2\n", ""), "prices.gpu_second", "prices.gpu_second: missing"),
    (GOOD + "terabyte = 1\n", "prices.terabyte", "prices.terabyte: unknown key; expected one"),
    (GOOD.replace("[prices]", 'colour = "blue"\n[prices]'), "colour", "colour: unknown key"),
    (_with("decimals", "2.5"), "decimals", "decimals: expected a whole number from 0 to 6, "
     "got 2.5"),
    (_with("decimals", "9"), "decimals", "got 9"),
    (_with("currency", '""'), "currency", "currency: expected a non-empty string"),
    (GOOD.replace('name = "test prices"\n', ""), "name", "name: missing"),
    (GOOD.split("[prices]")[0], "prices", "prices: expected a table of the prices"),
    (GOOD.split("[prices]")[0] + "prices = 3\n", "prices", "prices: expected a table"),
])
def test_each_error_names_its_key(text, key, expected):
    with pytest.raises(TariffError) as caught:
        parse_tariff(text)
    assert caught.value.key == key
    assert expected in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_errors_from_a_file_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text(_with("cpu_second", '"abc"'))
    with pytest.raises(TariffError, match=r"prices\.toml: prices\.cpu_second: expected a "
                       r"non-negative number, got 'abc'"):
        load_tariff(path)


def test_a_missing_file_names_its_path(tmp_path):
    path = tmp_path / "nowhere" / "prices.toml"
    with pytest.raises(TariffError, match=re.escape(f"{path}: no such tariff file")):
        load_tariff(path)


def test_a_file_that_is_not_toml(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text("[prices\njob = 1\n")
    with pytest.raises(TariffError, match=r"prices\.toml: not valid TOML"):
        load_tariff(path)
