"""Administrative areas: province, district (optional) and commune.

Codes are strings (``"46"``, ``"482"``, ``"20107"``): leading zeros are significant. Vietnam has
had no district level since 2025-07-01, so ``district_code`` may be empty; reports then roll up
commune → province directly.
"""

from __future__ import annotations

import attrs

__all__ = ["Area"]


def _code(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} is a string code (leading zeros matter), not {value!r}")


@attrs.frozen
class Area:
    """Where a beneficiary lives: a commune, its district (if any) and its province."""

    province_code: str = attrs.field(validator=_code)
    commune_code: str = attrs.field(validator=_code)
    district_code: str = attrs.field(default="", validator=_code)
    province_name: str = ""
    district_name: str = ""
    commune_name: str = ""

    @property
    def has_district(self) -> bool:
        return bool(self.district_code)

    def rollup(self) -> tuple[tuple[str, str], ...]:
        """The levels this area counts in, outermost first: ``(("province", code), …)``."""
        levels = [("province", self.province_code)]
        if self.district_code:
            levels.append(("district", self.district_code))
        levels.append(("commune", self.commune_code))
        return tuple(levels)
