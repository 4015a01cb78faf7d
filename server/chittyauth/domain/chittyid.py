"""ChittyID formats: the cheap pre-check run before any call to the authority.

The authority's answer is final; these functions only refuse what cannot possibly be a ChittyID,
so a malformed value never costs a network round trip. Three shapes exist:

Official (``OFFICIAL_PATTERN``), eight hyphen-separated parts::

    NN-G-RRR-SSSS-T-BB-C-K      e.g.  CH-A-USA-0042-P-25-Q-2
    NN    namespace, two letters          T   entity type letter (``ENTITY_LETTERS``)
    G     generation, one letter          BB  block, two digits
    RRR   region, three letters           C   category, one letter
    SSSS  sequence, four digits           K   check character (see ``official_check_char``)

Only the pattern is enforced for official IDs: the check character is our own definition (the
dev authority mints with it), and an official authority may issue IDs under another scheme, so
refusing them here would turn a pre-check into a verdict.

Numeric (``NUMERIC_PATTERN``), the authority's own variant, e.g. ``03-1-USA-1234-P-251-0-87``:
the last two digits are an ISO/IEC 7064 MOD 97-10 check over the earlier parts (see
``numeric_check_digits``); that check is enforced.

Legacy (``LEGACY_PATTERN``), e.g. ``CHITTY-PEO-USER123-ABC``: deprecated, accepted only when the
caller says so (``allow_legacy``).
"""

from __future__ import annotations

import random
import re
from typing import Final

from chittyauth.domain.errors import InvalidRequest

ENTITY_TYPES: Final = frozenset(
    {"PEO", "PLACE", "PROP", "EVNT", "AUTH", "INFO", "FACT", "CONTEXT", "ACTOR"}
)

# The official format has one letter for the entity type; PEO and PLACE/PROP share an initial,
# so the letters are assigned rather than derived.
ENTITY_LETTERS: Final[dict[str, str]] = {
    "PEO": "P",
    "PLACE": "L",
    "PROP": "T",
    "EVNT": "E",
    "AUTH": "A",
    "INFO": "I",
    "FACT": "F",
    "CONTEXT": "X",
    "ACTOR": "R",
}
ENTITY_BY_LETTER: Final[dict[str, str]] = {v: k for k, v in ENTITY_LETTERS.items()}

# fullmatch, never match with `$`: `$` also matches before a trailing newline.
OFFICIAL_PATTERN: Final = re.compile(
    r"[A-Z]{2}-[A-Z]-[A-Z]{3}-[0-9]{4}-[A-Z]-[0-9]{2}-[A-Z]-[0-9A-Z]"
)
NUMERIC_PATTERN: Final = re.compile(
    r"[0-9]{2}-[0-9]-[A-Z]{3}-[0-9]{4}-[A-Z]-[0-9]{3}-[0-9]-[0-9]{2}"
)
LEGACY_PATTERN: Final = re.compile(r"CHITTY-[A-Z]+-[A-Z0-9]+-[A-Z0-9]+")

# Longer than any plausible ID; bounds the work done on hostile input.
MAX_CHITTY_ID_LENGTH: Final = 128

_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTERS: Final = _ALPHABET[10:]
_DIGITS: Final = _ALPHABET[:10]


def check_format(chitty_id: str, *, allow_legacy: bool) -> None:
    """Refuse a value that cannot be a ChittyID, before any call to the authority.

    Args:
        chitty_id: The candidate ID, exactly as received (no trimming or case folding).
        allow_legacy: Whether the deprecated ``CHITTY-<TYPE>-<X>-<Y>`` form is acceptable.

    Raises:
        InvalidRequest: reason ``INVALID_CHITTY_ID``, saying which rule failed.
    """
    if not chitty_id or len(chitty_id) > MAX_CHITTY_ID_LENGTH:
        raise _invalid("chitty_id is empty or too long")
    if OFFICIAL_PATTERN.fullmatch(chitty_id):
        return
    if NUMERIC_PATTERN.fullmatch(chitty_id):
        if not numeric_checksum_ok(chitty_id):
            raise _invalid("chitty_id fails its mod-97 check digits")
        return
    if LEGACY_PATTERN.fullmatch(chitty_id):
        if not allow_legacy:
            raise _invalid("legacy CHITTY-<TYPE>-<X>-<Y> ChittyIDs are not accepted here")
        return
    raise _invalid(
        "chitty_id is not a ChittyID (expected the official form NN-G-RRR-SSSS-T-BB-C-K)"
    )


def is_official(chitty_id: str) -> bool:
    """Whether ``chitty_id`` has the official shape (check character not verified)."""
    return OFFICIAL_PATTERN.fullmatch(chitty_id) is not None


def check_entity(entity: str) -> str:
    """Return ``entity`` if it is a known entity type.

    Raises:
        InvalidRequest: reason ``INVALID_ENTITY_TYPE``.
    """
    if entity not in ENTITY_TYPES:
        raise InvalidRequest(
            f"entity must be one of {', '.join(sorted(ENTITY_TYPES))}",
            reason="INVALID_ENTITY_TYPE",
        )
    return entity


def mint_official(entity: str, rng: random.Random) -> str:
    """A fresh official-format ID for ``entity`` whose last character is its check character.

    Every part except the entity letter and the check character is drawn from ``rng``; pass a
    ``random.SystemRandom`` in production and a seeded ``random.Random`` in tests. Uniqueness
    is the caller's job (the dev authority retries on a collision).

    Raises:
        InvalidRequest: the entity type is unknown.
    """
    letter = ENTITY_LETTERS[check_entity(entity)]
    parts = [
        _draw(rng, _LETTERS, 2),  # namespace
        _draw(rng, _LETTERS, 1),  # generation
        _draw(rng, _LETTERS, 3),  # region
        _draw(rng, _DIGITS, 4),  # sequence
        letter,
        _draw(rng, _DIGITS, 2),  # block
        _draw(rng, _LETTERS, 1),  # category
    ]
    body = "-".join(parts)
    return f"{body}-{official_check_char(body)}"


def official_check_char(body: str) -> str:
    """The check character of an official ID's first seven parts (hyphens ignored).

    ISO/IEC 7064 MOD 37,36 (the hybrid system for the 36 characters 0-9A-Z): it detects every
    single-character substitution and every transposition of adjacent characters.

    Raises:
        ValueError: ``body`` holds a character outside 0-9, A-Z and ``-``.
    """
    product = 36
    for char in body.replace("-", ""):
        total = (product + _ALPHABET.index(char)) % 36 or 36
        product = (total * 2) % 37
    return _ALPHABET[(37 - product) % 36]


def official_checksum_ok(chitty_id: str) -> bool:
    """Whether an official-format ID ends with our check character (dev-minted IDs do)."""
    if not is_official(chitty_id):
        return False
    body, _, check = chitty_id.rpartition("-")
    return official_check_char(body) == check


def numeric_check_digits(body: str) -> str:
    """The two check digits of a numeric-variant ID's first seven parts.

    ISO/IEC 7064 MOD 97-10, as IBAN uses it: drop the hyphens, replace each letter by its value
    (A=10 … Z=35), read the result as a decimal number N; the check is ``98 - (N * 100) mod 97``,
    written with two digits. A whole ID is then good when ``int(digits of body + check) mod 97
    == 1``. So ``03-1-USA-1234-P-251-0`` takes ``87``.

    Raises:
        ValueError: ``body`` holds a character outside 0-9, A-Z and ``-``.
    """
    return f"{98 - (_as_number(body) * 100) % 97:02d}"


def numeric_checksum_ok(chitty_id: str) -> bool:
    """Whether a numeric-variant ID's last part is its MOD 97-10 check."""
    if NUMERIC_PATTERN.fullmatch(chitty_id) is None:
        return False
    body, _, check = chitty_id.rpartition("-")
    return _as_number(body + check) % 97 == 1


def entity_of(chitty_id: str) -> str | None:
    """The entity type an official or numeric ID names by its type letter, if any."""
    if OFFICIAL_PATTERN.fullmatch(chitty_id) or NUMERIC_PATTERN.fullmatch(chitty_id):
        return ENTITY_BY_LETTER.get(chitty_id.split("-")[4])
    return None


def _as_number(text: str) -> int:
    digits = "".join(str(_ALPHABET.index(char)) for char in text.replace("-", ""))
    return int(digits)


def _draw(rng: random.Random, alphabet: str, count: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, reason="INVALID_CHITTY_ID")
