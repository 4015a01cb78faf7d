"""Page tokens: opaque, bound to the listing they were made for, refused when forged."""

from __future__ import annotations

import base64

import pytest

from chittyauth.domain.errors import InvalidRequest
from chittyauth.domain.paging import decode_page_token, encode_page_token, page_size


def test_round_trip_and_first_page() -> None:
    token = encode_page_token(1234.5, "cli_x", ("owner", True))
    assert decode_page_token(token, ("owner", True)) == (1234.5, "cli_x")
    assert decode_page_token("", ("owner", True)) is None


@pytest.mark.parametrize(
    "scope",
    [("other", True), ("owner", False), ("owner", 1), ("owner",), ()],
)
def test_a_token_from_another_listing_is_refused(scope: tuple[str | bool | int, ...]) -> None:
    token = encode_page_token(1.0, "x", ("owner", True))
    with pytest.raises(InvalidRequest) as caught:
        decode_page_token(token, scope)
    assert caught.value.reason == "INVALID_PAGE_TOKEN"


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        "x" * 2000,
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'[true, "x"]').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_forged_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_page_token(token)
    assert caught.value.reason == "INVALID_PAGE_TOKEN"


def test_page_size_defaults_caps_and_refuses_negative() -> None:
    assert page_size(0) == 50
    assert page_size(10_000) == 500
    assert page_size(0, default=100, maximum=1000) == 100
    with pytest.raises(InvalidRequest) as caught:
        page_size(-1)
    assert caught.value.reason == "INVALID_PAGE_SIZE"
