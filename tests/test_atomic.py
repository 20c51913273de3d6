"""Atomic writes (`sam3d_eval.atomic`): the target is replaced whole or left as it was, and no temporary stays."""

import os

import pytest

from sam3d_eval.atomic import atomic_path, write_bytes_atomic, write_text_atomic


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "table.csv"
    assert write_text_atomic(target, "a,b\n1,2\n") == target  # parent folders are made
    write_bytes_atomic(target, b"a,b\n3,4\n", durable=True)
    assert target.read_bytes() == b"a,b\n3,4\n"
    assert os.listdir(target.parent) == ["table.csv"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.safetensors"]


def test_temporary_is_hidden_unique_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "mesh.ply"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b and a.parent == tmp_path
        assert a.name.startswith(".mesh.") and a.suffix == ".ply"  # writers that pick a format by suffix
        a.write_text("first")
        b.write_text("second")
    assert target.read_text() == "first"  # the outer block ends last and wins
