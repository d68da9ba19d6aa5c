import numpy as np
import pytest

from fourdcontrast.io.off import read_off, write_off


def test_header_quirk_counts_on_the_header_line(tmp_path):
    path = tmp_path / "chair_0001.off"
    path.write_text("OFF4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    v, f = read_off(path)
    assert v.shape == (4, 3) and f.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_standard_header_comments_and_quads(tmp_path):
    path = tmp_path / "a.off"
    path.write_text("OFF\n# a comment\n4 1 0\n0 0 0\n2 0 0\n2 3 0\n0 3 0.5\n4 0 1 2 3\n")
    v, f = read_off(path)
    assert v[3].tolist() == [0, 3, 0.5]
    assert f.tolist() == [[0, 1, 2], [0, 2, 3]]


@pytest.mark.parametrize("quirk", [False, True])
def test_write_read_round_trip(tmp_path, rng, quirk):
    v = rng.normal(size=(30, 3))
    f = rng.integers(0, 30, size=(12, 3))
    path = write_off(tmp_path / "m.off", v, f, counts_on_header_line=quirk)
    assert path.read_text().startswith("OFF30 12 0\n" if quirk else "OFF\n30 12 0\n")
    v2, f2 = read_off(path)
    np.testing.assert_allclose(v2, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f2, f)


@pytest.mark.parametrize("text, match", [
    ("PLY\n3 1 0\n", "does not start with 'OFF'"),
    ("OFF\n", "no counts line"),
    ("OFF\nthree 1 0\n", "bad counts"),
    ("OFF3 1 0\n0 0 0\n1 0 0\n", "truncated"),
    ("OFF3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
    ("OFF3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", "three numbers"),
    ("", "empty"),
])
def test_malformed_files_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.off"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.off.*{match}"):
        read_off(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_off(tmp_path / "nothere.off")
