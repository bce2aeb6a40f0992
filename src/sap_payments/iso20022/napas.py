"""The NAPAS member banks: BIN, short name, legal name and SWIFT code.

A Vietnamese bank account is named by the bank's NAPAS BIN (the six digits VietQR codes and
interbank transfers use) and the account number. A pain.001 names the creditor's bank by its BIN
as clearing-system member id and, when the bank has one, by its SWIFT code (BIC).

The table is the project's own, written from the public NAPAS / VietQR member lists. Banks that
were renamed after a restructuring keep their BIN (970406 Đông Á is now Vikki Bank, 970414
Oceanbank is now MBV, 970444 CBBank is now VCBNeo); the short names are the ones customers and
VietQR apps still show. ``swift`` is ``None`` where the member has no SWIFT code or none is
publicly known: a pain.001 then names the bank by BIN alone.

>>> bank = bank_by_bin("970415")
>>> bank.short_name, bank.swift
('VietinBank', 'ICBVVNVX')
>>> bank_by_bin("123456") is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs

__all__ = ["NAPAS_BANKS", "NapasBank", "bank_by_bin"]


@attrs.frozen
class NapasBank:
    """One NAPAS member: ``bin`` (6 digits), the short name, the legal name and the SWIFT code."""

    bin: str
    short_name: str
    name: str
    swift: str | None = None


_BANKS: Final = (
    NapasBank("970400", "SaigonBank", "Ngân hàng TMCP Sài Gòn Công Thương", "SBITVNVX"),
    NapasBank("970403", "Sacombank", "Ngân hàng TMCP Sài Gòn Thương Tín", "SGTTVNVX"),
    NapasBank(
        "970405", "Agribank", "Ngân hàng Nông nghiệp và Phát triển Nông thôn Việt Nam", "VBAAVNVX"
    ),
    NapasBank("970406", "DongABank", "Ngân hàng TNHH MTV Số Vikki (trước là Đông Á)", "EACBVNVX"),
    NapasBank("970407", "Techcombank", "Ngân hàng TMCP Kỹ Thương Việt Nam", "VTCBVNVX"),
    NapasBank("970408", "GPBank", "Ngân hàng TNHH MTV Dầu Khí Toàn Cầu", "GBNKVNVX"),
    NapasBank("970409", "BacABank", "Ngân hàng TMCP Bắc Á", "NASCVNVX"),
    NapasBank(
        "970410", "StandardChartered", "Ngân hàng TNHH MTV Standard Chartered Việt Nam", "SCBLVNVX"
    ),
    NapasBank("970412", "PVcomBank", "Ngân hàng TMCP Đại Chúng Việt Nam", "WBVNVNVX"),
    # Oceanbank's SWIFT code is OJBAVNVX; some published lists carry OCBKUS3M, a US bank's BIC.
    NapasBank("970414", "Oceanbank", "Ngân hàng TNHH MTV Việt Nam Hiện Đại (MBV)", "OJBAVNVX"),
    NapasBank("970415", "VietinBank", "Ngân hàng TMCP Công Thương Việt Nam", "ICBVVNVX"),
    NapasBank("970416", "ACB", "Ngân hàng TMCP Á Châu", "ASCBVNVX"),
    NapasBank("970418", "BIDV", "Ngân hàng TMCP Đầu tư và Phát triển Việt Nam", "BIDVVNVX"),
    NapasBank("970419", "NCB", "Ngân hàng TMCP Quốc Dân", "NVBAVNVX"),
    NapasBank("970421", "VRB", "Ngân hàng Liên doanh Việt - Nga", "VRBAVNVX"),
    NapasBank("970422", "MBBank", "Ngân hàng TMCP Quân đội", "MSCBVNVX"),
    NapasBank("970423", "TPBank", "Ngân hàng TMCP Tiên Phong", "TPBVVNVX"),
    NapasBank("970424", "ShinhanBank", "Ngân hàng TNHH MTV Shinhan Việt Nam", "SHBKVNVX"),
    NapasBank("970425", "ABBANK", "Ngân hàng TMCP An Bình", "ABBKVNVX"),
    NapasBank("970426", "MSB", "Ngân hàng TMCP Hàng Hải Việt Nam", "MCOBVNVX"),
    NapasBank("970427", "VietABank", "Ngân hàng TMCP Việt Á", "VNACVNVX"),
    NapasBank("970428", "NamABank", "Ngân hàng TMCP Nam Á", "NAMAVNVX"),
    NapasBank("970429", "SCB", "Ngân hàng TMCP Sài Gòn", "SACLVNVX"),
    NapasBank("970430", "PGBank", "Ngân hàng TMCP Thịnh vượng và Phát triển", "PGBLVNVX"),
    NapasBank("970431", "Eximbank", "Ngân hàng TMCP Xuất Nhập khẩu Việt Nam", "EBVIVNVX"),
    NapasBank("970432", "VPBank", "Ngân hàng TMCP Việt Nam Thịnh Vượng", "VPBKVNVX"),
    NapasBank("970433", "VietBank", "Ngân hàng TMCP Việt Nam Thương Tín", "VNTTVNVX"),
    NapasBank("970434", "IndovinaBank", "Ngân hàng TNHH Indovina", "IABBVNVX"),
    NapasBank("970436", "Vietcombank", "Ngân hàng TMCP Ngoại Thương Việt Nam", "BFTVVNVX"),
    NapasBank("970437", "HDBank", "Ngân hàng TMCP Phát triển Thành phố Hồ Chí Minh", "HDBCVNVX"),
    NapasBank("970438", "BaoVietBank", "Ngân hàng TMCP Bảo Việt", "BVBVVNVX"),
    NapasBank("970439", "PublicBank", "Ngân hàng TNHH MTV Public Việt Nam", "VIDPVNVX"),
    NapasBank("970440", "SeABank", "Ngân hàng TMCP Đông Nam Á", "SEAVVNVX"),
    NapasBank("970441", "VIB", "Ngân hàng TMCP Quốc tế Việt Nam", "VNIBVNVX"),
    NapasBank("970442", "HongLeong", "Ngân hàng TNHH MTV Hong Leong Việt Nam", "HLBBVNVX"),
    NapasBank("970443", "SHB", "Ngân hàng TMCP Sài Gòn - Hà Nội", "SHBAVNVX"),
    NapasBank(
        "970444", "CBBank", "Ngân hàng TNHH MTV Ngoại thương Công nghệ số (VCBNeo)", "GTBAVNVX"
    ),
    NapasBank("970446", "COOPBANK", "Ngân hàng Hợp tác xã Việt Nam"),
    NapasBank("970448", "OCB", "Ngân hàng TMCP Phương Đông", "ORCOVNVX"),
    NapasBank("970449", "LPBank", "Ngân hàng TMCP Lộc Phát Việt Nam", "LVBKVNVX"),
    NapasBank("970452", "KienLongBank", "Ngân hàng TMCP Kiên Long", "KLBKVNVX"),
    NapasBank("970454", "VietCapitalBank", "Ngân hàng TMCP Bản Việt (BVBank)", "VCBCVNVX"),
    NapasBank("970455", "IBKHN", "Ngân hàng Công nghiệp Hàn Quốc - Chi nhánh Hà Nội", "IBKOVNVX"),
    NapasBank(
        "970456",
        "IBKHCM",
        "Ngân hàng Công nghiệp Hàn Quốc - Chi nhánh TP. Hồ Chí Minh",
        "IBKOVNVX",
    ),
    NapasBank("970457", "Woori", "Ngân hàng TNHH MTV Woori Việt Nam", "HVBKVNVX"),
    NapasBank(
        "970458", "UnitedOverseas", "Ngân hàng TNHH MTV United Overseas Bank Việt Nam", "UOVBVNVX"
    ),
    NapasBank("970459", "CIMB", "Ngân hàng TNHH MTV CIMB Việt Nam", "CIBBVNVN"),
    NapasBank("970460", "Vietcredit", "Công ty Tài chính Cổ phần Tín Việt"),
    NapasBank("970462", "KookminHN", "Ngân hàng Kookmin - Chi nhánh Hà Nội", "CZNBVN2X"),
    NapasBank("970463", "KookminHCM", "Ngân hàng Kookmin - Chi nhánh TP. Hồ Chí Minh", "CZNBVNVX"),
    NapasBank("970464", "TNEXFinance", "Công ty Tài chính TNHH MTV Cộng Đồng (TNEX)"),
    NapasBank("970465", "SINOPAC", "Ngân hàng SinoPac - Chi nhánh TP. Hồ Chí Minh", "SINOVNVX"),
    NapasBank("970466", "KEBHanaHCM", "Ngân hàng KEB Hana - Chi nhánh TP. Hồ Chí Minh", "KOEXVN2X"),
    NapasBank("970467", "KEBHanaHN", "Ngân hàng KEB Hana - Chi nhánh Hà Nội", "KOEXVNVX"),
    NapasBank("970468", "MAFC", "Công ty Tài chính TNHH MTV Mirae Asset (Việt Nam)"),
    NapasBank("970470", "MCredit", "Công ty Tài chính TNHH MB Shinsei"),
    # Members whose BIN is outside the 9704xx range (card-scheme BINs, digital banks).
    NapasBank("422589", "CIMB", "Ngân hàng TNHH MTV CIMB Việt Nam", "CIBBVNVN"),
    NapasBank("458761", "HSBC", "Ngân hàng TNHH MTV HSBC (Việt Nam)", "HSBCVNVX"),
    NapasBank("533948", "Citibank", "Ngân hàng Citibank N.A. - Chi nhánh Hà Nội", "CITIVNVX"),
    NapasBank("546034", "CAKE", "Ngân hàng số CAKE by VPBank"),
    NapasBank("546035", "Ubank", "Ngân hàng số Ubank by VPBank"),
    NapasBank(
        "668888",
        "KBank",
        "Ngân hàng Đại chúng TNHH Kasikornbank - Chi nhánh TP. Hồ Chí Minh",
        "KASIVNVX",
    ),
    NapasBank("796500", "DBSBank", "DBS Bank Ltd - Chi nhánh TP. Hồ Chí Minh", "DBSSVNVX"),
    NapasBank("801011", "Nonghyup", "Ngân hàng Nonghyup - Chi nhánh Hà Nội", "NACFVNVX"),
    NapasBank("963388", "Timo", "Ngân hàng số Timo by Bản Việt Bank"),
    NapasBank("999888", "VBSP", "Ngân hàng Chính sách Xã hội"),
)

#: The NAPAS member banks by BIN (read-only).
NAPAS_BANKS: Final[Mapping[str, NapasBank]] = MappingProxyType({bank.bin: bank for bank in _BANKS})


def bank_by_bin(bin: str) -> NapasBank | None:
    """The NAPAS member with this BIN, or ``None`` when the table does not know it."""
    return NAPAS_BANKS.get(bin)
