"""Write the student edition: every notebook with its `solution`-tagged cells removed.

Usage: python tools/make_student.py [--src nbs] [--dest _student]
Uses nbconvert's TagRemovePreprocessor; everything else (check cells, outputs) is kept.
"""
import argparse, shutil, sys
from pathlib import Path
import nbformat
from nbconvert.preprocessors import TagRemovePreprocessor

def strip_solutions(nb):
    "Return `nb` without cells tagged `solution`."
    pp = TagRemovePreprocessor(remove_cell_tags={'solution'}, enabled=True)
    nb, _ = pp.preprocess(nb, {})
    return nb

def build(src='nbs', dest='_student'):
    src, dest = Path(src), Path(dest)
    if dest.exists(): shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns('.ipynb_checkpoints', '__pycache__'))
    n = 0
    for p in sorted(dest.rglob('*.ipynb')):
        nb = nbformat.read(p, as_version=4)
        before = len(nb.cells)
        nb = strip_solutions(nb)
        n += before - len(nb.cells)
        nbformat.write(nb, p)
    print(f'student edition in {dest}/: removed {n} solution cells')
    return dest

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--src', default='nbs'); ap.add_argument('--dest', default='_student')
    a = ap.parse_args(argv)
    build(a.src, a.dest)
    return 0

if __name__ == '__main__': sys.exit(main())
