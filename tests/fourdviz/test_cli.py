"""``fourdcontrast view`` renders PNGs of a sequence."""

from __future__ import annotations

import argparse

import pytest
from vizdata import make_sequence

pytest.importorskip("matplotlib")

from fourdviz import cli  # noqa: E402


def run(argv):
    parser = argparse.ArgumentParser()
    cli.add_cli_arguments(parser)
    return cli.run_cli(parser.parse_args(argv))


def test_view_all_writes_every_png(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "default_sequence", lambda seed=0: make_sequence(seed))
    monkeypatch.setattr(cli, "STATIC_VIEWS", ("sequence", "check"))  # keep the test short
    pytest.importorskip("polyscope")
    assert run(["--view", "all", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["check.png", "polyscope.png", "sequence.png"]
    assert all(p.stat().st_size > 10_000 for p in tmp_path.iterdir())


def test_view_single_to_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "default_sequence", lambda seed=0: make_sequence(seed))
    out = tmp_path / "t.png"
    assert run(["--view", "trajectory", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        run([str(tmp_path / "nope.npz")])
