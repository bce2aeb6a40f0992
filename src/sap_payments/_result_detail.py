"""The detail of the event a provider's result records: our reason, beside the provider's own
code and words.

A FAILED or RETURNED instruction's event says why in sap_payments' words (``closed_account``)
and keeps what the provider said (a bank's ``AC04`` and its text) beside it, in one line that
reads well and parses back::

    closed_account; code "AC04"; message "Account closed"

The provider's words are its own, so they are tidied before they are kept: control characters
become spaces, runs of six digits or more (an account or phone number a bank may quote) are
masked to their last three digits, and the text is cut to 140 characters. ``cycle show`` and
the settlement report read them back with :func:`parse_result_detail`.
"""

from __future__ import annotations

import json
import re
from typing import Final

__all__ = ["parse_result_detail", "result_detail"]

_LIMIT: Final = 140
_DIGITS: Final = re.compile(r"\d{6,}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_STRING: Final = r'"(?:[^"\\]|\\.)*"'
_DETAIL: Final = re.compile(
    rf"(?P<reason>[a-z_]+)?(?:(?:^|; )code (?P<code>{_STRING}))?"
    rf"(?:(?:^|; )message (?P<message>{_STRING}))?"
)


def _tidy(text: str | None) -> str | None:
    if text is None:
        return None
    text = _CONTROL.sub(" ", text).strip()
    text = _DIGITS.sub(lambda m: "***" + m[0][-3:], text)
    return text[:_LIMIT] or None


def result_detail(reason: str | None, code: str | None, message: str | None) -> str | None:
    """The event detail of a result: ``reason``, then the provider's ``code`` and ``message``
    (tidied, see the module doc) when it gave them; None when there is nothing to say.

    >>> result_detail("closed_account", "AC04", "Account 102010001234567 closed")
    'closed_account; code "AC04"; message "Account ***567 closed"'
    """
    parts = [reason] if reason else []
    code, message = _tidy(code), _tidy(message)
    if code:
        parts.append(f"code {json.dumps(code, ensure_ascii=False)}")
    if message:
        parts.append(f"message {json.dumps(message, ensure_ascii=False)}")
    return "; ".join(parts) or None


def parse_result_detail(detail: str | None) -> tuple[str | None, str | None, str | None]:
    """(reason, provider code, provider message) of an event detail written by
    :func:`result_detail`; a detail of another shape gives (None, None, None).

    >>> parse_result_detail('closed_account; code "AC04"; message "Account closed"')
    ('closed_account', 'AC04', 'Account closed')
    """
    if not detail:
        return None, None, None
    match = _DETAIL.fullmatch(detail)
    if match is None:
        return None, None, None
    code, message = match["code"], match["message"]
    return (
        match["reason"],
        None if code is None else str(json.loads(code)),
        None if message is None else str(json.loads(message)),
    )
