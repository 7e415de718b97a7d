import numpy as np
import pytest

from tfbind_dist.data import encoding


def test_encode_decode_roundtrip_and_lowercase():
    seqs = ["ACGTN", "acgtn", "TTTTA"]
    codes = encoding.encode(seqs)
    assert codes.dtype == np.uint8 and codes.shape == (3, 5)
    np.testing.assert_array_equal(codes[0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(codes[0], codes[1])
    assert encoding.decode(codes) == ["ACGTN", "ACGTN", "TTTTA"]


def test_one_hot_channel_order_and_n_policies():
    codes = encoding.encode(["AAACGTN"])
    x = encoding.one_hot(codes)
    np.testing.assert_array_equal(x[0, :6], [[1, 0, 0, 0]] * 3 + [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert x[0, 6].tolist() == [0.25] * 4
    assert encoding.one_hot(codes, "ones")[0, 6].tolist() == [1, 1, 1, 1]
    assert encoding.one_hot(codes, "zeros")[0, 6].tolist() == [0, 0, 0, 0]
    import jax.numpy as jnp

    np.testing.assert_array_equal(np.asarray(encoding.one_hot(jnp.asarray(codes))), x)


def test_invalid_character_names_record_and_position():
    with pytest.raises(encoding.SequenceError, match=r"seqB: invalid base 'X' at position 2"):
        encoding.encode(["ACGT", "ACXT"], names=["seqA", "seqB"])
    with pytest.raises(encoding.SequenceError, match="row 1: length 3"):
        encoding.encode(["ACGT", "ACG"])
    with pytest.raises(encoding.SequenceError, match="N at position 1"):
        encoding.encode(["ANGT"], n_policy="error")


def test_reverse_complement():
    codes = encoding.encode(["AACGTN"])
    assert encoding.decode(encoding.reverse_complement(codes)) == ["NACGTT"]
