"""The public API is what ``sap_payments/__init__.py`` exports, listed in a sorted ``__all__``."""

from __future__ import annotations
import __future__

import importlib.metadata
import re
import shutil
import subprocess
import sys
from inspect import ismodule
from pathlib import Path

import pytest

import sap_payments


def _public_names() -> set[str]:
    """Names bound in ``sap_payments/__init__.py`` without a leading underscore, modules aside.

    ``from __future__ import annotations`` binds ``annotations`` too; it is a compiler directive,
    not an export, so it is left out.
    """
    return {
        name
        for name, value in vars(sap_payments).items()
        if not name.startswith("_")
        and not ismodule(value)
        and not isinstance(value, __future__._Feature)
    }


def _ruf022_key(name: str) -> tuple[int, list[tuple[int, object]]]:
    """Ruff's RUF022 isort-style order: SCREAMING_CASE, then CamelCase, then the rest; each
    group in natural order (digits compare as numbers)."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    parts = [
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part
    ]
    return group, parts


def test_all_lists_exactly_the_public_names() -> None:
    assert set(sap_payments.__all__) == _public_names() | {"__version__"}


def test_every_name_in_all_is_public_and_resolves() -> None:
    public = _public_names()
    for name in sap_payments.__all__:
        value = getattr(sap_payments, name)
        assert not ismodule(value), name
        assert name in public or name == "__version__", name


def test_all_has_no_duplicates() -> None:
    assert len(sap_payments.__all__) == len(set(sap_payments.__all__))


def test_all_is_sorted_isort_style() -> None:
    names = list(sap_payments.__all__)
    assert names == sorted(names, key=_ruf022_key)
    assert names[0] == "DEFAULT_PROGRAMME"  # constants first
    assert names.index("TRANSITIONS") < names.index("ApprovalResult") < names.index("__version__")
    assert names.index("__version__") < names.index("approve")


def test_the_sort_key_matches_ruff() -> None:
    shuffled = ["b", "A", "AB", "Ab", "SQLiteStore", "Sap", "__version__", "a10", "a2", "A_B"]
    assert sorted(shuffled, key=_ruf022_key) == [
        "AB", "A_B", "A", "Ab", "SQLiteStore", "Sap", "__version__", "a2", "a10", "b",
    ]  # fmt: skip  # what `ruff check --select RUF022 --fix` makes of the list


def test_ruff_finds_all_sorted() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    init = Path(sap_payments.__file__)
    done = subprocess.run(
        [ruff, "check", "--isolated", "--select", "RUF022", "--no-cache", str(init)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_version_comes_from_the_installed_metadata() -> None:
    assert sap_payments.__version__ == importlib.metadata.version("sap-payments")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", sap_payments.__version__)


def test_exported_objects_are_the_modules_own() -> None:
    from sap_payments import cycles, instructions, ledger, money, periods

    assert sap_payments.Money is money.Money
    assert sap_payments.Period is periods.Period
    assert sap_payments.Ledger is ledger.Ledger
    assert sap_payments.TRANSITIONS is instructions.TRANSITIONS
    assert sap_payments.prepare is cycles.prepare
