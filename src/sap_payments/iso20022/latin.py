"""Text for bank files: the Latin subset some banks demand, and limits that never split a letter.

Vietnamese names are written with diacritics (``Nguyễn Thị Hồng Đào``). Many banks' systems take
only the Latin subset, so a bank profile may ask for names without them (``Nguyen Thi Hong Dao``):
:func:`to_latin`. Every text field of an ISO 20022 message has a maximum length (``Max140Text``
…); :func:`fit` cuts a text to that length without leaving half a letter behind.

>>> to_latin("Nguyễn Thị Hồng Đào")
'Nguyen Thi Hong Dao'
>>> fit("Trần Văn Bình", 6)
'Trần V'
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["fit", "to_latin"]

#: Letters that Unicode does not decompose into a base letter and marks, and punctuation that
#: Vietnamese text often carries, with their Latin stand-ins. U+00D0/U+00F0 (Icelandic eth) are
#: often typed for Đ/đ, which they look like.
_LATIN: Final = str.maketrans(
    {
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
    }
)

#: The combining marks Vietnamese uses all lie in this block (grave, acute, circumflex, tilde,
#: breve, hook above, horn, dot below); marks elsewhere take the slow path.
_VIETNAMESE_MARKS: Final = re.compile("[\u0300-\u036f]+")

#: What stands for a character that has no Latin form at all.
_UNKNOWN: Final = "?"

_ZWJ: Final = "\u200d"


def to_latin(text: str) -> str:
    """``text`` in ASCII: diacritics removed, ``đ`` → ``d``, ``Đ`` → ``D``; ASCII kept as it is.

    Letters are decomposed (NFD) and their combining marks dropped. What is left that is not
    ASCII is replaced by its compatibility form when that is ASCII (a no-break space becomes a
    space, ``ﬁ`` becomes ``fi``) and by ``?`` otherwise, so the result is always ASCII.

    >>> to_latin("Đặng Thị Ngọc Ánh – Huế")
    'Dang Thi Ngoc Anh - Hue'
    >>> to_latin("Lê Văn Tám")
    'Le Van Tam'
    """
    if text.isascii():
        return text
    latin = _VIETNAMESE_MARKS.sub("", unicodedata.normalize("NFD", text.translate(_LATIN)))
    if latin.isascii():
        return latin
    return "".join(_latin_char(char) for char in latin)


def _latin_char(char: str) -> str:
    if char.isascii():
        return char
    if unicodedata.combining(char):
        return ""
    compatible = "".join(
        c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
    )
    return compatible if compatible and compatible.isascii() else _UNKNOWN


def fit(text: str, limit: int) -> str:
    r"""``text`` in NFC, cut to at most ``limit`` characters without splitting a letter.

    A letter is a base character with the combining marks that follow it (and characters joined
    by a zero-width joiner): a cut never separates them, so it may fall short of ``limit``. NFC
    composes Vietnamese letters into single characters, so they are never cut apart.

    >>> fit("Nguyễn Văn Ấn", 8)
    'Nguyễn V'
    >>> fit("Nguye\u0302\u0303n", 5)  # NFC first: ê + ◌̃ is the single letter ễ
    'Nguyễ'
    >>> len(fit("q\u0323\u0301", 2))  # no precomposed q with two marks: keep all or nothing
    0

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    text = unicodedata.normalize("NFC", text)
    if len(text) <= limit:
        return text
    cut = limit
    while cut > 0 and _continues(text, cut):
        cut -= 1
    return unicodedata.normalize("NFC", text[:cut])


def _continues(text: str, index: int) -> bool:
    """Whether ``text[index]`` belongs to the letter before it (so no cut may fall before it)."""
    char = text[index]
    previous = text[index - 1]
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or _ZWJ in (char, previous)
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # emoji skin-tone modifiers
        or (previous == "\r" and char == "\n")
    )
