"""The tariff: what each unit of usage costs, read from a TOML file.

    name = "list prices 2026"
    currency = "EUR"
    decimals = 2              # places amounts are rounded to (half-up); default 2

    [prices]                  # every one required, each a non-negative number per unit
    job = 0.01                # per billable job
    image = 0.002             # per input image of a billable job
    megabyte = 0.0005         # per 10^6 bytes of decoded input processed (bytes_in)
    cpu_second = 0.0002       # per second of compute on a CPU backend
    gpu_second = 0.002        # per measured second of compute on a GPU
    gigabyte_month = 0.03     # per 10^9 bytes stored for a month (hot tier)
    gigabyte_month_cold = 0.004   # optional: per 10^9 bytes on the cold tier for a month
    examination_fetched = 0.05    # optional: data fee per examination (study) fetched
    delivery = 0.005          # optional: per result delivered to a DICOM node
    printed_sheet = 0.5       # optional: per sheet printed on a DICOM printer (copies count)
    software_use = 0.001      # optional: the service's charge per use of a package's
                              # operation, on top of the package's own fee per use
    software_download = 0.01  # optional: per download of a package's wheel

Without ``gigabyte_month_cold`` the cold tier is priced like the hot one (one
``gigabyte_month`` line for both); without ``examination_fetched`` there is no data fee.
The software items are invoiced one line per package version used or downloaded (the
package's fee per use added to ``software_use``), only where there were uses or
downloads; unpriced, they cost 0 (the uses still their packages' fees).
Prices are read as exact decimals (never through binary floats). Without a file, the
example prices of ``default_tariff.toml``, shipped with the package, apply.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

__all__ = ["ITEMS", "OPTIONAL_ITEMS", "PACKAGE_ITEMS", "Tariff", "TariffError", "load_tariff",
           "parse_tariff"]

ITEMS = ("job", "image", "megabyte", "cpu_second", "gpu_second", "gigabyte_month")
#: Priced (and invoiced) only where the tariff names them.
OPTIONAL_ITEMS = ("gigabyte_month_cold", "examination_fetched", "delivery", "printed_sheet")
#: Priced per package version used or downloaded (invoices.py), not per subscriber.
PACKAGE_ITEMS = ("software_use", "software_download")
DEFAULT_FILE = "default_tariff.toml"
MAX_DECIMALS = 6


class TariffError(ValueError):
    """A tariff file that cannot be used; ``key`` is the entry at fault ("" for the file)."""

    def __init__(self, message: str, key: str = "", source: str = ""):
        self.message = message
        self.key = key
        self.source = source
        super().__init__(": ".join(part for part in (source, key, message) if part))


@dataclass(frozen=True)
class Tariff:
    name: str
    currency: str
    prices: MappingProxyType        # item -> Decimal: every item of ITEMS, optional ones given
    decimals: int = 2

    def price(self, item: str) -> Decimal:
        return self.prices[item]

    def price_or_zero(self, item: str) -> Decimal:
        """An optional item's price; 0 where the tariff does not price it."""
        return self.prices.get(item, Decimal(0))

    @property
    def items(self) -> tuple[str, ...]:
        """The items an invoice lists: every required one, then the optional ones set."""
        return ITEMS + tuple(i for i in OPTIONAL_ITEMS if i in self.prices)


def _shown(value) -> str:
    return str(value) if isinstance(value, Decimal) else repr(value)


def _price(key: str, value) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TariffError(f"expected a non-negative number, got {value!r}", key)
    value = Decimal(value)
    if not value.is_finite() or value < 0:
        raise TariffError(f"expected a non-negative number, got {value}", key)
    return value


def _text(data: dict, key: str) -> str:
    if key not in data:
        raise TariffError("missing; expected a string", key)
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise TariffError(f"expected a non-empty string, got {_shown(value)}", key)
    return value.strip()


def parse_tariff(text: str, source: str = "") -> Tariff:
    """The tariff in the TOML ``text``; TariffError naming the key at fault (and
    ``source``, the file it came from, when given)."""
    try:
        return _parse(text)
    except TariffError as exc:
        raise TariffError(exc.message, exc.key, source) from None
    except tomllib.TOMLDecodeError as exc:
        raise TariffError(f"not valid TOML: {exc}", "", source) from None


def _parse(text: str) -> Tariff:
    data = tomllib.loads(text, parse_float=Decimal)
    unknown = sorted(set(data) - {"name", "currency", "decimals", "prices"})
    if unknown:
        raise TariffError("unknown key; expected name, currency, decimals and [prices]",
                          unknown[0])
    name, currency = _text(data, "name"), _text(data, "currency")
    decimals = data.get("decimals", 2)
    if (isinstance(decimals, bool) or not isinstance(decimals, int)
            or not 0 <= decimals <= MAX_DECIMALS):
        raise TariffError(f"expected a whole number from 0 to {MAX_DECIMALS}, "
                          f"got {_shown(decimals)}", "decimals")
    prices = data.get("prices")
    if not isinstance(prices, dict):
        raise TariffError(f"expected a table of the prices of {', '.join(ITEMS)}", "prices")
    known = ITEMS + OPTIONAL_ITEMS + PACKAGE_ITEMS
    for key in prices:
        if key not in known:
            raise TariffError(f"unknown key; expected one of {', '.join(known)}",
                              f"prices.{key}")
    parsed = {}
    for item in ITEMS:
        if item not in prices:
            raise TariffError("missing; expected a non-negative number (0 if it is free)",
                              f"prices.{item}")
        parsed[item] = _price(f"prices.{item}", prices[item])
    for item in OPTIONAL_ITEMS + PACKAGE_ITEMS:
        if item in prices:
            parsed[item] = _price(f"prices.{item}", prices[item])
    return Tariff(name=name, currency=currency, decimals=decimals,
                  prices=MappingProxyType(parsed))


def load_tariff(path: str | Path | None = None) -> Tariff:
    """The tariff in the file ``path``; None: the example prices shipped with the package.

    Raises
    ------
    TariffError
        The file is missing or unreadable, or an entry is wrong (the message names it).
    """
    if path is None:
        text = importlib.resources.files(__package__).joinpath(DEFAULT_FILE).read_text(
            encoding="utf-8")
        return parse_tariff(text, DEFAULT_FILE)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TariffError(f"{path}: no such tariff file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TariffError(f"{path}: cannot read the tariff file: {exc}") from None
    return parse_tariff(text, str(path))
