from hypothesis import given
from hypothesis import strategies as st

from flare_chain.lora.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, decode, encode


@given(st.text())
def test_decode_inverts_encode_for_any_text(text: str) -> None:
    assert decode(encode(text, add_bos=True, add_eos=True)) == text


@given(st.text())
def test_ids_are_utf8_bytes_wrapped_in_specials(text: str) -> None:
    ids = encode(text, add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert bytes(ids[1:-1]) == text.encode("utf-8")


def test_vocab_holds_bytes_and_specials_and_is_a_multiple_of_8() -> None:
    assert {PAD_ID, BOS_ID, EOS_ID} <= set(range(256, VOCAB_SIZE))
    assert VOCAB_SIZE % 8 == 0


def test_decode_of_invalid_utf8_replaces_instead_of_raising() -> None:
    assert decode([0xFF, ord("a"), PAD_ID]) == "\ufffda"
