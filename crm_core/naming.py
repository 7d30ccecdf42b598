"""Normalised company names, the fallback identity when a customer has no credit code."""

from __future__ import annotations

import re
import unicodedata

# Legal-form and filler words that differ between sheets for the same company.
_SUFFIXES = (
    "股份有限公司",
    "有限责任公司",
    "有限公司",
    "集团",
    "公司",
    "co., ltd.",
    "co.,ltd.",
    "co. ltd",
    "ltd.",
    "ltd",
    "inc.",
    "inc",
)
_PUNCT = re.compile(r"[\s\.,，。()（）\-_·'\"“”]+")


def normalize_name(name: str) -> str:
    """Full-width to half-width, lower case, no punctuation or spaces, common legal suffixes removed."""
    text = unicodedata.normalize("NFKC", name).strip().lower()
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if text.endswith(suffix) and len(text) > len(suffix):
                text = text[: -len(suffix)].rstrip()
                changed = True
    return _PUNCT.sub("", text)
