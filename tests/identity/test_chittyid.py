"""The ChittyID format pre-check and the dev authority's minting format."""

from __future__ import annotations

import random

import pytest

from chittyauth.domain import chittyid
from chittyauth.domain.errors import InvalidRequest


@pytest.mark.parametrize(
    ("chitty_id", "ours"),
    [
        ("CH-A-USA-0042-P-25-Q-2", True),
        # Official shape under another authority's check scheme: still passes the pre-check.
        ("AB-C-DEF-1234-G-56-H-I", False),
        ("ZZ-Z-ZZZ-9999-Z-99-Z-0", False),
    ],
)
def test_official_format_is_accepted(chitty_id: str, ours: bool) -> None:
    chittyid.check_format(chitty_id, allow_legacy=False)
    assert chittyid.is_official(chitty_id)
    assert chittyid.official_checksum_ok(chitty_id) is ours


@pytest.mark.parametrize(
    "chitty_id",
    [
        "",
        "ch-a-usa-0042-p-25-q-2",  # lower case
        "CH-A-USA-0042-P-25-Q",  # a part missing
        "CH-A-USA-042-P-25-Q-2",  # short sequence
        "CH-1-USA-0042-P-25-Q-2",  # digit where a letter belongs
        "CH-A-USA-0042-P-25-Q-2\n",  # `$` would let this through
        " CH-A-USA-0042-P-25-Q-2",
        "CH-A-USA-0042-P-25-Q-2-X",
        "CH_A_USA_0042_P_25_Q_2",
        "X" * 200,
        "not a chitty id",
    ],
)
def test_malformed_ids_are_refused(chitty_id: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chittyid.check_format(chitty_id, allow_legacy=True)
    assert caught.value.reason == "INVALID_CHITTY_ID"
    assert caught.value.grpc_code == "INVALID_ARGUMENT"


def test_numeric_variant_with_good_check_digits_is_accepted() -> None:
    body = "03-1-USA-1234-P-251-0"
    check = chittyid.numeric_check_digits(body)
    assert check == "87"
    assert chittyid.numeric_checksum_ok(f"{body}-{check}")
    chittyid.check_format(f"{body}-{check}", allow_legacy=False)
    assert chittyid.entity_of(f"{body}-{check}") == "PEO"


@pytest.mark.parametrize("chitty_id", ["03-1-USA-1234-P-251-0-82", "03-1-USA-1235-P-251-0-87"])
def test_numeric_variant_with_bad_check_digits_is_refused(chitty_id: str) -> None:
    assert not chittyid.numeric_checksum_ok(chitty_id)
    with pytest.raises(InvalidRequest, match="mod-97") as caught:
        chittyid.check_format(chitty_id, allow_legacy=False)
    assert caught.value.reason == "INVALID_CHITTY_ID"


def test_legacy_format_only_when_allowed() -> None:
    legacy = "CHITTY-PEO-USER123-ABC"
    chittyid.check_format(legacy, allow_legacy=True)
    assert chittyid.entity_of(legacy) is None  # the type part of a legacy ID is free text
    with pytest.raises(InvalidRequest, match="legacy") as caught:
        chittyid.check_format(legacy, allow_legacy=False)
    assert caught.value.reason == "INVALID_CHITTY_ID"


def test_legacy_lookalikes_are_refused_even_when_allowed() -> None:
    for value in ("CHITTY-PEO-USER123", "CHITTY-peo-USER123-ABC", "CHITTY--A-B"):
        with pytest.raises(InvalidRequest):
            chittyid.check_format(value, allow_legacy=True)


@pytest.mark.parametrize("entity", sorted(chittyid.ENTITY_TYPES))
def test_minted_ids_are_official_carry_the_entity_and_pass_their_check(entity: str) -> None:
    rng = random.Random(7)
    for _ in range(50):
        minted = chittyid.mint_official(entity, rng)
        chittyid.check_format(minted, allow_legacy=False)
        assert chittyid.is_official(minted)
        assert chittyid.official_checksum_ok(minted)
        assert chittyid.entity_of(minted) == entity


def test_check_character_catches_every_single_substitution() -> None:
    minted = chittyid.mint_official("PEO", random.Random(3))
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for position, original in enumerate(minted[:-1]):
        if original == "-":
            continue
        for replacement in alphabet.replace(original, ""):
            changed = minted[:position] + replacement + minted[position + 1 :]
            assert not chittyid.official_checksum_ok(changed), changed


def test_check_character_catches_adjacent_transpositions() -> None:
    minted = chittyid.mint_official("FACT", random.Random(11)).replace("-", "")
    body = minted[:-1]
    for position in range(len(body) - 1):
        swapped = body[:position] + body[position + 1] + body[position] + body[position + 2 :]
        if swapped != body:
            assert chittyid.official_check_char(swapped) != minted[-1]


def test_minting_refuses_an_unknown_entity() -> None:
    with pytest.raises(InvalidRequest) as caught:
        chittyid.mint_official("USER", random.Random(1))
    assert caught.value.reason == "INVALID_ENTITY_TYPE"


def test_every_entity_type_has_its_own_letter() -> None:
    assert set(chittyid.ENTITY_LETTERS) == chittyid.ENTITY_TYPES
    assert len(set(chittyid.ENTITY_LETTERS.values())) == len(chittyid.ENTITY_TYPES)
