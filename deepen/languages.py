"""Languages of the translation tasks: ISO 639-1 code -> English name and FLORES-200 code.

FLORES-200 codes ("deu_Latn") name the FLORES+ data configs and are also the language tokens of NLLB-200, so one table
serves the task registry (prompt wording, hub configs) and the members (the language token a translator reads).
"""

from __future__ import annotations

#: ISO 639-1 -> (English name, FLORES-200 code).
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("English", "eng_Latn"),
    "de": ("German", "deu_Latn"),
    "ro": ("Romanian", "ron_Latn"),
    "fr": ("French", "fra_Latn"),
    "es": ("Spanish", "spa_Latn"),
    "it": ("Italian", "ita_Latn"),
    "cs": ("Czech", "ces_Latn"),
    "ru": ("Russian", "rus_Cyrl"),
    "zh": ("Chinese", "zho_Hans"),
    "ja": ("Japanese", "jpn_Jpan"),
}


def language_name(code: str) -> str:
    """'de' -> 'German' (unknown codes are returned as given)."""
    return LANGUAGES.get(code, (code, code))[0]


def flores_code(code: str) -> str | None:
    """'de' -> 'deu_Latn'; a code that already is a FLORES-200 code is returned as is; None when unknown."""
    if code in LANGUAGES:
        return LANGUAGES[code][1]
    return code if any(code == flores for _, flores in LANGUAGES.values()) else None
