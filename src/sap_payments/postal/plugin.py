"""The ``postal-cash`` provider plugin: payout lists out, confirmation files back.

The post office pays cash at its counters (and at home for those who cannot travel); it does not
answer a call. ``submit`` writes, for the payments not sent before, one payout list per pay point
into the configured ``outbox`` — a CSV for its systems and a printable XLSX sheet with a signature
column and totals — and a manifest (count, control sum, the SHA-256 of every file), each file
atomically, and answers PENDING for every payment: the instructions become ACCEPTED. Each line
carries its one-time collection code (:mod:`sap_payments.collection_codes`), bound to the
instruction, the amount and the pay point.

The post office's confirmations come back as a file; they are checked against the ledger and
applied by :func:`sap_payments.postal.confirmations.import_confirmations`
(``sap-payments import confirmations``), not by ``parse_report``: a confirmation can only be
judged with the ledger at hand (was the code used before, is the proxy's mandate valid).

Settings (``[providers.NAME]`` in ``sap-payments.toml``)::

    plugin = "postal-cash"
    channel = "postal"
    outbox = "postal-outbox"         # where the payout lists go (relative: to the config file)
    window_days = 15                 # the payment window: lists can be paid this many days
    secret_env = "SAP_POSTAL_SECRET" # the collection-code key, hexadecimal, from the environment
    # secret = "…"                   # … or inline (tests and demos only)
    key_id = "postal-1"              # the key's name, recorded with each confirmation
    # previous_secret_env / previous_secret / previous_key_id: the key being replaced
    reverify_after_unclaimed = 3     # consecutive unclaimed months before re-verification
    max_batch = 5000

Payout lists carry the payee's name (the beneficiary or the authorised proxy), because the post
office pays that person; nothing else personal (no national id, no birth date, no phone).

Bound to a ledger (capability ``ledger_identity``), every payout line carries the ledger's id
(column ``ledger``), as does the manifest (``ledger_id``) and the list id (``L`` + 15 hex digits
derived from the ledger and the keys); a confirmation file that keeps the column and names
another ledger is refused whole (:func:`~sap_payments.postal.confirmations.import_confirmations`).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from sap_payments._files import write_atomically
from sap_payments.beneficiaries import CashPickup, Channel, FinancialAddress
from sap_payments.collection_codes import CollectionKey, collection_code
from sap_payments.errors import ConfigError, InvalidInput
from sap_payments.output import csv_row, sheet_row
from sap_payments.providers import (
    AddressCheck,
    Capabilities,
    Payment,
    ProviderError,
    Reason,
    Result,
    ResultKind,
)

__all__ = ["PAYOUT_COLUMNS", "PostalCashProvider", "postal_cash"]

_KEYS: Final = frozenset(
    {
        "outbox",
        "window_days",
        "secret",
        "secret_env",
        "key_id",
        "previous_secret",
        "previous_secret_env",
        "previous_key_id",
        "reverify_after_unclaimed",
        "max_batch",
    }
)

#: The columns of a payout list's CSV, one row per payment.
PAYOUT_COLUMNS: Final = (
    "line",
    "instruction_id",
    "pay_point",
    "payee",
    "payee_kind",
    "amount",
    "currency",
    "home_delivery",
    "collection_code",
    "window_closes",
    "ledger",  # the ledger id the list was made for (empty when the plugin is not bound)
)
#: The XLSX header row, in Vietnamese, with the signature column last.
_XLSX_HEADER: Final = (
    "STT",
    "Mã lệnh chi",
    "Người nhận",
    "Nhận thay",
    "Số tiền (đồng)",
    "Chi tại nhà",
    "Mã nhận tiền",
    "Ký nhận",
)
_XLSX_WIDTHS: Final = (6, 30, 28, 10, 16, 11, 16, 22)
#: What a pay point may contribute to a file name as it is; anything else becomes "_".
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")


def _key(name: str, settings: Mapping[str, Any], prefix: str) -> CollectionKey | None:
    """The collection key from ``{prefix}secret`` or ``{prefix}secret_env``; None when neither."""
    inline, env = settings.get(f"{prefix}secret"), settings.get(f"{prefix}secret_env")
    where = f"providers.{name}.{prefix}secret"
    if inline is not None and env is not None:
        raise ConfigError("give secret or secret_env, not both", key=where)
    if inline is None and env is None:
        return None
    if env is not None:
        if not isinstance(env, str) or not env:
            raise ConfigError("must name an environment variable", key=f"{where}_env")
        inline = os.environ.get(env)
        if not inline:
            raise ConfigError(
                f"the environment variable {env} holding the key is not set", key=f"{where}_env"
            )
    if not isinstance(inline, str):
        raise ConfigError("must be the key in hexadecimal (a string)", key=where)
    key_id = settings.get(f"{prefix}key_id", "postal-1" if not prefix else "postal-previous")
    if not isinstance(key_id, str):
        raise ConfigError("must be a string", key=f"providers.{name}.{prefix}key_id")
    try:
        return CollectionKey.from_hex(key_id, inline)
    except InvalidInput as exc:  # the message never quotes the secret
        raise ConfigError(str(exc), key=where) from None


def _whole(name: str, settings: Mapping[str, Any], key: str, default: int) -> int:
    value = settings.get(key, default)
    if type(value) is not int or value < 1:
        raise ConfigError("must be a whole number of at least 1", key=f"providers.{name}.{key}")
    return value


@attrs.frozen
class _Settings:
    outbox: Path
    window_days: int
    keys: tuple[CollectionKey, ...]
    reverify_after: int
    max_batch: int

    @classmethod
    def of(cls, name: str, settings: Mapping[str, Any]) -> _Settings:
        unknown = sorted(set(settings) - _KEYS)
        if unknown:
            raise ConfigError(
                "unknown setting of the postal-cash plugin", key=f"providers.{name}.{unknown[0]}"
            )
        outbox = settings.get("outbox")
        if not isinstance(outbox, str) or not outbox:
            raise ConfigError("required (a directory path)", key=f"providers.{name}.outbox")
        current = _key(name, settings, "")
        if current is None:
            raise ConfigError(
                "required: secret_env (or secret), the collection-code key in hexadecimal",
                key=f"providers.{name}.secret_env",
            )
        previous = _key(name, settings, "previous_")
        return cls(
            Path(outbox),
            _whole(name, settings, "window_days", 15),
            (current,) if previous is None else (current, previous),
            _whole(name, settings, "reverify_after_unclaimed", 3),
            _whole(name, settings, "max_batch", 5000),
        )


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@attrs.frozen
class _Line:
    payment: Payment
    pickup: CashPickup
    code: str


class PostalCashProvider:
    """The post office: payout lists with collection codes out, confirmation files back."""

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = _Settings.of(name, settings)
        self.capabilities = Capabilities(
            channels=frozenset({Channel.POSTAL}),
            max_batch=self.settings.max_batch,
            status_query=False,
            callbacks=False,
            address_validation=True,
            ledger_identity=True,
        )
        #: the ledger the lists are made for (``bind_ledger``); None: lists name no ledger
        self.ledger_id: str | None = None
        #: today's date (UTC); replaceable, so tests can move the clock
        self.today: Callable[[], dt.date] = _today
        self.settings.outbox.mkdir(parents=True, exist_ok=True)
        self._register = sqlite3.connect(self.settings.outbox / "register.db")
        self._register.executescript(
            "CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, list_id TEXT NOT NULL, "
            "pay_point TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL, "
            "window_closes TEXT NOT NULL);"
        )
        self._register.commit()

    def bind_ledger(self, ledger_id: str) -> None:
        """Make the payout lists for the ledger ``ledger_id`` (see the module doc)."""
        self.ledger_id = ledger_id

    @property
    def keys(self) -> tuple[CollectionKey, ...]:
        """The collection keys codes are verified with: the current one first."""
        return self.settings.keys

    @property
    def reverify_after(self) -> int:
        return self.settings.reverify_after

    # -- out --------------------------------------------------------------------------------
    def submit(self, payments: Sequence[Payment]) -> list[Result]:
        """Write the payout lists of the payments not sent before; PENDING for every payment.

        Raises:
            ProviderError: a payment is not cash at a pay point, or a key listed before (or
                earlier in the batch) comes with another amount or pay point —
                ``provider_code="KEY_REUSED"``: a key is never reused for another payment, and
                its collection code binds the first (nothing is written).
        """
        listed = self._listed([p.key for p in payments])
        fresh: dict[str, Payment] = {}
        for payment in payments:
            pickup = payment.address
            point = pickup.pay_point if isinstance(pickup, CashPickup) else None
            held = listed.get(payment.key)
            if held is None:
                first = fresh.setdefault(payment.key, payment)
                first_point = (
                    first.address.pay_point if isinstance(first.address, CashPickup) else None
                )
                held = (first_point or "", first.amount.minor, first.amount.currency)
            if held != (point or "", payment.amount.minor, payment.amount.currency):
                raise ProviderError(
                    self.name,
                    f"payment {payment.key}: listed before with another amount or pay point; a "
                    "key is never reused for another payment: nothing was written",
                    provider_code="KEY_REUSED",
                )
        if fresh:
            self._write(list(fresh.values()))
        return [Result(p.key, ResultKind.PENDING) for p in payments]

    def _listed(self, keys: Sequence[str]) -> dict[str, tuple[str, int, str]]:
        """(pay point, amount, currency) of each key listed before."""
        found: dict[str, tuple[str, int, str]] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            for key, point, amount, currency in self._register.execute(
                "SELECT key, pay_point, amount, currency FROM sent "
                f"WHERE key IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                found[key] = (point, amount, currency)
        return found

    def window_closes(self, keys: Sequence[str]) -> dict[str, dt.date]:
        """The last day of the payment window of each key sent (keys never sent are absent)."""
        found: dict[str, dt.date] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            for key, closes in self._register.execute(
                f"SELECT key, window_closes FROM sent WHERE key IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                found[key] = dt.date.fromisoformat(closes)
        return found

    def _lines(self, payments: Sequence[Payment]) -> dict[str, list[_Line]]:
        by_point: dict[str, list[_Line]] = {}
        key = self.settings.keys[0]
        for payment in payments:
            pickup = payment.address
            if not isinstance(pickup, CashPickup):
                raise ProviderError(
                    self.name,
                    f"payment {payment.key}: not cash at a pay point",
                    provider_code="NOT_CASH",
                )
            try:
                code = collection_code(key, payment.key, payment.amount.minor, pickup.pay_point)
            except InvalidInput as exc:
                raise ProviderError(self.name, str(exc), provider_code="NO_CODE") from exc
            by_point.setdefault(pickup.pay_point, []).append(_Line(payment, pickup, code))
        for lines in by_point.values():  # the clerk finds people by name; home visits last
            lines.sort(
                key=lambda line: (
                    line.pickup.home_delivery,
                    unicodedata.normalize("NFC", line.payment.payee_name).casefold(),
                    line.payment.key,
                )
            )
        return by_point

    def _write(self, payments: Sequence[Payment]) -> None:
        keys = "\n".join(sorted(p.key for p in payments))
        if self.ledger_id is not None:
            keys = f"{self.ledger_id}\n{keys}"
        digest = hashlib.sha256(keys.encode()).hexdigest()
        list_id = f"L{digest[:15].upper()}"  # the same for the same ledger and keys
        opens = self.today()
        closes = opens + dt.timedelta(days=self.settings.window_days)
        references = sorted({p.reference for p in payments})
        directory = self.settings.outbox
        files = []
        for point, lines in sorted(self._lines(payments).items()):
            stem = f"payout-{list_id}-{_UNSAFE.sub('_', point)}"
            csv_data = _payout_csv(point, lines, closes, self.ledger_id or "")
            title = (
                f"Danh sách chi trả tiền mặt — điểm chi trả {point} — {', '.join(references)} "
                f"— nhận từ {opens:%d/%m/%Y} đến hết {closes:%d/%m/%Y}"
            )
            xlsx_data = _payout_xlsx(title, lines)
            write_atomically(directory / f"{stem}.csv", csv_data)
            write_atomically(directory / f"{stem}.xlsx", xlsx_data)
            amounts = [line.payment.amount for line in lines]
            files.append(
                {
                    "pay_point": point,
                    "count": len(lines),
                    "control_sum": sum(a.minor for a in amounts),
                    "home_delivery": sum(line.pickup.home_delivery for line in lines),
                    "csv": f"{stem}.csv",
                    "xlsx": f"{stem}.xlsx",
                    "sha256": {
                        "csv": hashlib.sha256(csv_data).hexdigest(),
                        "xlsx": hashlib.sha256(xlsx_data).hexdigest(),
                    },
                }
            )
        currencies = sorted({p.amount.currency for p in payments})
        manifest = {
            "list_id": list_id,
            "ledger_id": self.ledger_id,
            "provider": self.name,
            "references": references,
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "window_opens": opens.isoformat(),
            "window_closes": closes.isoformat(),
            "key_id": self.settings.keys[0].key_id,
            "count": len(payments),
            "control_sum": sum(p.amount.minor for p in payments),
            "currency": currencies[0] if len(currencies) == 1 else currencies,
            "files": files,
        }
        write_atomically(
            directory / f"payout-{list_id}.manifest.json",
            json.dumps(manifest, indent=1, ensure_ascii=False).encode(),
        )
        with self._register:  # after the files: a registered key always has its list
            self._register.executemany(
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        p.key,
                        list_id,
                        p.address.pay_point if isinstance(p.address, CashPickup) else "",
                        p.amount.minor,
                        p.amount.currency,
                        closes.isoformat(),
                    )
                    for p in payments
                ],
            )

    def status(self, keys: Sequence[str]) -> list[Result]:
        raise ProviderError(
            self.name,
            "the post office answers by file: import its confirmations",
            provider_code="NO_STATUS",
        )

    def validate(self, address: FinancialAddress, payee_name: str | None = None) -> AddressCheck:
        if not isinstance(address, CashPickup) or not address.pay_point.strip():
            return AddressCheck(ok=False, reason=Reason.UNKNOWN_ACCOUNT)
        if "\x1f" in address.pay_point:  # a collection code cannot bind it
            return AddressCheck(ok=False, reason=Reason.UNKNOWN_ACCOUNT)
        return AddressCheck(ok=True)

    # -- in ---------------------------------------------------------------------------------
    def parse_report(self, data: bytes) -> list[Result]:
        """Refused: confirmations are judged with the ledger at hand (codes used before,
        proxies' mandates), by ``sap-payments import confirmations``.

        Raises:
            ProviderError: always.
        """
        raise ProviderError(
            self.name,
            "post-office confirmations are imported with 'sap-payments import confirmations' "
            "(it checks collection codes and proxies against the ledger)",
            provider_code="USE_CONFIRMATIONS",
        )

    def close(self) -> None:
        self._register.close()


def _payout_csv(point: str, lines: Sequence[_Line], closes: dt.date, ledger: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PAYOUT_COLUMNS)
    for number, line in enumerate(lines, 1):
        payment = line.payment
        writer.writerow(
            csv_row(
                (
                    number,
                    payment.key,
                    point,
                    unicodedata.normalize("NFC", payment.payee_name),
                    "proxy" if payment.payee_is_proxy else "beneficiary",
                    payment.amount.minor,
                    payment.amount.currency,
                    "true" if line.pickup.home_delivery else "false",
                    line.code,
                    closes.isoformat(),
                    ledger,
                )
            )
        )
    return out.getvalue().encode("utf-8")


def _payout_xlsx(title: str, lines: Sequence[_Line]) -> bytes:
    """A printable sheet: title, header (repeated on every page), lines, total; A4 landscape."""
    import openpyxl  # imported here: only XLSX writers pay for it
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "chi-tra"
    bold = Font(bold=True)
    sheet.append(sheet_row(sheet, [title]))
    sheet.append(list(_XLSX_HEADER))
    for number, line in enumerate(lines, 1):
        payment = line.payment
        sheet.append(
            sheet_row(
                sheet,
                [
                    number,
                    payment.key,
                    unicodedata.normalize("NFC", payment.payee_name),
                    "Có" if payment.payee_is_proxy else "",
                    payment.amount.minor,
                    "Có" if line.pickup.home_delivery else "",
                    line.code,  # text: a code may start with 0
                    "",
                ],
            )
        )
    total = sum(line.payment.amount.minor for line in lines)
    sheet.append(
        sheet_row(sheet, ["", "", f"Tổng cộng: {len(lines)} người", "", total, "", "", ""])
    )
    last = sheet.max_row
    for cell in (sheet["A1"], *sheet[2], *sheet[last]):
        cell.font = bold
    for row in sheet.iter_rows(min_row=3, min_col=5, max_col=5):
        row[0].number_format = "#,##0"
    for row in sheet.iter_rows(min_row=3, max_row=last - 1, min_col=7, max_col=7):
        row[0].number_format = "@"
    for index, width in enumerate(_XLSX_WIDTHS, 1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    for number in range(3, last):
        sheet.row_dimensions[number].height = 30  # room for a signature
    sheet.print_title_rows = "2:2"
    sheet.page_setup.orientation = sheet.ORIENTATION_LANDSCAPE
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def postal_cash(name: str, settings: Mapping[str, Any]) -> PostalCashProvider:
    """Entry point ``postal-cash``."""
    return PostalCashProvider(name, settings)
