"""Fail when a notebook is committed without outputs, or a figure cell has no image output.

Usage: python tools/check_outputs.py [NB ...]   (default: every nbs/*.ipynb)
Cells flagged `#| slow` / `#| gpu` (settings.ini tst_flags) are skipped: they keep no outputs.
"""
import re, sys
from pathlib import Path
import nbformat

FLAGS = ('slow', 'gpu')
FIG = re.compile(r'\bplt\.|\.plot\(|subplots\(|\bplot_\w*\(')

def flagged(src):
    "True if the cell carries a `#| slow`/`#| gpu` directive."
    return any(re.match(r'#\|\s*(%s)\b' % '|'.join(FLAGS), l.strip()) for l in src.splitlines())

def is_figure(cell):
    "A code cell that draws a matplotlib figure (or is tagged `figure`)."
    tags = cell.get('metadata', {}).get('tags', [])
    return 'figure' in tags or bool(FIG.search(cell.source))

def has_image(cell):
    return any(o.get('output_type') in ('display_data', 'execute_result') and
               any(k.startswith('image/') for k in o.get('data', {})) for o in cell.get('outputs', []))

def problems(path):
    "List of human-readable problems in one notebook."
    nb = nbformat.read(path, as_version=4)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == 'code']
    out = []
    if code and not any(c.get('outputs') for _, c in code) and Path(path).name != 'index.ipynb':
        out.append(f'{path}: committed with no outputs (run `make execute`)')
    for i, c in code:
        if flagged(c.source) or not is_figure(c): continue
        if not has_image(c):
            out.append(f'{path}: cell {i} draws a figure but has no image output: {c.source.splitlines()[0][:60]!r}')
    return out

def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    nbs = [Path(a) for a in argv] or sorted(Path('nbs').glob('*.ipynb'))
    errs = [p for nb in nbs for p in problems(nb)]
    for e in errs: print(e, file=sys.stderr)
    print(f'check_outputs: {len(nbs)} notebooks, {len(errs)} problems')
    return 1 if errs else 0

if __name__ == '__main__': sys.exit(main())
