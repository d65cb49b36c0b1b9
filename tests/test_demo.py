"""Tests of tools/demo.py (`make demo`): three parts in order, each with a sentence."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from hingeabl_nb.losses import LOSSES

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("demo", ROOT / "tools" / "demo.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def test_demo_prints_three_parts_with_their_sentences(tmp_path):
    "`make demo`'s script, small sizes, in a process of its own."
    argv = ["--toy-steps", "10", "--table-pairs", "300", "--out", str(tmp_path)]
    p = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout
    at = [out.index(p) for p in demo.PARTS]
    assert at == sorted(at), "threshold table, then toy, then lab"
    parts = [out[a:b] for a, b in zip(at, at[1:] + [len(out)])]
    for part in parts:
        assert part.count("Shows:") == 1 and part.count("Does not show:") == 1, part
    table, toy, lab = parts
    for loss in LOSSES:  # every loss in the registry
        assert f"\n{loss} " in table
    assert "b* - F1-opt b: ATL +" in table  # the measured gap, printed
    assert "gold <= TH" in toy and "(train)" in toy and "F1 0.00" not in out
    assert f"Figure: {tmp_path / 'toy.png'}" in toy
    assert (tmp_path / "toy.png").is_file() and (tmp_path / "toy.json").is_file()
    if demo.RECORD.is_file():
        assert "Table 3" in lab and "seed(s)" in lab
    assert "make jupyter" in out and "running the laptop lab" not in out


def test_demo_without_a_lab_record_says_where_it_comes_from(tmp_path):
    text = demo.lab_part(tmp_path / "missing.json")
    assert text.startswith(demo.PARTS[2]) and "no record" in text


@pytest.mark.parametrize("bad", [["--toy-steps", "0"], ["--table-pairs", "x"]])
def test_demo_refuses_bad_arguments(bad):
    with pytest.raises(SystemExit):
        demo.main(bad)
