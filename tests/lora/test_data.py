import pytest
import torch

from flare_chain.errors import TrainingError
from flare_chain.lora.data import split_windows, texts_to_windows, token_tensor, windows_for_training
from flare_chain.lora.tokenizer import BOS_ID, EOS_ID, byte_tokenizer

BYTES = byte_tokenizer()


def test_windows_cut_the_token_stream_in_order() -> None:
    windows = texts_to_windows(["abcdef", "xyz"], 4, BYTES)
    flat = [BOS_ID, *b"abcdef", EOS_ID, BOS_ID, *b"xyz", EOS_ID]
    assert windows.tolist() == [flat[0:4], flat[4:8], flat[8:12]]
    assert token_tensor(["abcdef", "xyz"], BYTES).tolist() == flat


def test_split_is_deterministic_disjoint_and_covers_every_window() -> None:
    windows = torch.arange(200 * 4).reshape(200, 4)
    a, b = split_windows(windows, 0.1, seed=7), split_windows(windows, 0.1, seed=7)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert a.val.shape[0] == 20 and a.train.shape[0] == 180
    ids = set(a.train[:, 0].tolist()) | set(a.val[:, 0].tolist())
    assert len(ids) == 200


def test_another_seed_holds_out_other_windows() -> None:
    windows = torch.arange(200 * 4).reshape(200, 4)
    assert not torch.equal(split_windows(windows, 0.1, seed=1).val, split_windows(windows, 0.1, seed=2).val)


def test_caps_take_a_prefix_so_smaller_caps_are_subsets() -> None:
    windows = torch.arange(300 * 2).reshape(300, 2)
    small = split_windows(windows, 0.2, seed=0, max_train=10, max_val=5)
    big = split_windows(windows, 0.2, seed=0, max_train=50, max_val=20)
    assert small.train.shape[0] == 10 and small.val.shape[0] == 5
    assert set(small.train[:, 0].tolist()) <= set(big.train[:, 0].tolist())
    assert set(small.val[:, 0].tolist()) <= set(big.val[:, 0].tolist())


def test_too_short_text_says_how_many_tokens_were_needed() -> None:
    with pytest.raises(TrainingError, match=r"has 12 tokens .* at least 256 tokens"):
        windows_for_training(["short text"], tokenizer=BYTES, seq_len=128, val_fraction=0.1, seed=0)


def test_empty_dataset_is_refused() -> None:
    with pytest.raises(TrainingError, match="dataset is empty"):
        windows_for_training([], tokenizer=BYTES, seq_len=16, val_fraction=0.1, seed=0)
