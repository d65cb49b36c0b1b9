"""Fail when a notebook is committed without its outputs.

That is: none at all (while some cell draws, prints or ends with a bare expression), a
figure cell with no image, a top-level print() with no printed text, or an error
(traceback) output.

It also keeps figure cells to drawing: a cell that draws makes no check (`assert`,
`test_eq`/`test_close`/`test_fail`/..., `compare`, `print`; they go in the cell before)
and follows a markdown cell (the sentence that says what to look at in the figure).

Saved widget state (the models in a notebook's metadata and the outputs that show one)
must stay under WIDGET_LIMIT bytes in all: it churns on every execution and shows
nothing without a kernel; `dev/execute_nbs.py` strips it.

Usage: python dev/check_outputs.py [NB ...]   (default: every nbs/*.ipynb)
Cells flagged `#| slow` / `#| gpu` (settings.ini tst_flags) are skipped: they keep no
outputs.

A cell "draws a figure" when its top-level code (not the bodies of the functions or
classes it defines) calls matplotlib (`plt.show()`, `plt.subplots(...)`, `ax.plot(...)`,
a `plot_*` function) or calls a function defined earlier in the notebook whose body
draws; a cell can also be tagged `figure`. So a cell that only defines a plotting
function (03_hinge's `explore`, 11_reproduce's `plot_paired`) needs no image; the cell
that calls it does. A cell or function that calls `plt.close(...)` has saved its figure
to a file on purpose and needs no image.
"""

import ast
import json
import re
import sys
from pathlib import Path

import nbformat
from execute_nbs import is_flagged, tst_flags

FLAGS = tuple(tst_flags())
CLOSE = re.compile(r"\bplt\.close\(")
FIG = re.compile(
    r"\bplt\.(?!close\b|rcParams\b|style\b|ioff\b|switch_backend\b|get_backend\b|cm\b|colormaps\b)|\.plot\(|\bsubplots\(|\bplot_\w*\(|\bax\d*\.\w+\("
)


def flagged(src):
    """True if the cell carries a `#| slow`/`#| gpu` directive.

    This is the rule `execute_nbs` and nbdev_test skip by."""
    return is_flagged(src, FLAGS)


def _python(src):
    "The cell's source without `#|` directives, IPython magics and shell escapes."
    return "\n".join(
        "" if l.lstrip().startswith(("#|", "%", "!")) else l for l in src.splitlines()
    )


def analyse(src, drawers=frozenset()):
    """(draws, prints, defined_drawers) for one cell.

    Whether its top-level code draws, whether it calls print() as a top-level statement,
    and the functions it defines whose bodies draw."""
    code = _python(src)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return bool(FIG.search(code)), False, set()
    defined, draws, prints = set(), False, False
    for node in tree.body:
        seg = ast.get_source_segment(code, node) or ""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if FIG.search(seg) and not CLOSE.search(seg):
                defined.add(node.name)  # saves and closes: shows nothing
            continue
        calls = {
            n.func.id
            for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        if FIG.search(seg) or calls & (set(drawers) | defined):
            draws = True
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "print"
            and not any(k.arg == "file" for k in node.value.keywords)
        ):
            prints = True
    if CLOSE.search(code):
        draws = False  # the cell closes its figures on purpose (it saved them to files)
    return draws, prints, defined


CHECKS = re.compile(r"^(test(_\w+)?|compare|assert_close|print)$")


def checks_in(src):
    """The checks a cell's own code makes (sorted names).

    `assert` statements and calls of `test_*`, `compare`, `assert_close` and `print`,
    outside the bodies of the functions and classes the cell defines."""
    try:
        tree = ast.parse(_python(src))
    except SyntaxError:
        return []
    found, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Assert):
            found.add("assert")
        if isinstance(node, ast.Call):
            f = node.func
            name = getattr(f, "id", None) or getattr(f, "attr", "")
            if CHECKS.match(name):
                found.add(name)
        todo.extend(ast.iter_child_nodes(node))
    return sorted(found)


def figure_problems(path, nb=None):
    """Figure cells that do more than draw, or that no sentence introduces."""
    nb = nb or nbformat.read(path, as_version=4)
    out, drawers = [], set()
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        draws, _, defined = analyse(c.source, drawers)
        drawers |= defined
        if not (draws or "figure" in c.metadata.get("tags", [])):
            continue
        first = c.source.strip().splitlines()[0][:60] if c.source.strip() else ""
        checks = checks_in(c.source)
        if checks:
            out.append(
                f"{path}: cell {i} draws a figure and also checks "
                f"({', '.join(checks)}): move the checks to the cell before it: "
                f"{first!r}"
            )
        if i == 0 or nb.cells[i - 1].cell_type != "markdown":
            out.append(
                f"{path}: cell {i} draws a figure right after a code cell: put one "
                f"sentence before it that says what to look at: {first!r}"
            )
    return out


def displays(src):
    """True if the cell ends with a bare expression that is not a call.

    Such as a name, a dict, `x[0]`...: Jupyter shows it."""
    code = _python(src).rstrip()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    last = tree.body[-1] if tree.body else None
    return (
        isinstance(last, ast.Expr)
        and not isinstance(last.value, (ast.Call, ast.Constant, ast.Await, ast.Yield))
        and not code.endswith(";")
    )


def expects_output(cell, drawers=frozenset()):
    """A code cell that shows something when run.

    It draws, prints at top level or ends with a bare expression."""
    if flagged(cell.source):
        return False
    draws, prints, _ = analyse(cell.source, drawers)
    return draws or prints or displays(cell.source)


def is_figure(cell, drawers=frozenset()):
    "A code cell that draws a matplotlib figure (or is tagged `figure`)."
    tags = cell.get("metadata", {}).get("tags", [])
    return "figure" in tags or analyse(cell.source, drawers)[0]


def image_outputs(cell):
    "How many outputs of the cell are images."
    return sum(
        o.get("output_type") in ("display_data", "execute_result")
        and any(k.startswith("image/") for k in o.get("data", {}))
        for o in cell.get("outputs", [])
    )


def has_image(cell):
    return image_outputs(cell) > 0


def has_text(cell):
    return any(
        o.get("output_type") == "stream" and o.get("text")
        for o in cell.get("outputs", [])
    )


def problems(path):
    "List of human-readable problems in one notebook."
    nb = nbformat.read(path, as_version=4)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if code and not any(c.get("outputs") for _, c in code):
        # a notebook whose cells all run silently (defs and passing checks) has nothing
        # to show
        drawers = set()
        for _, c in code:
            drawers |= analyse(c.source, drawers)[2]
        if any(expects_output(c, drawers) for _, c in code):
            return [f"{path}: committed with no outputs (run `make execute`)"]
    out, drawers = [], set()
    for i, c in code:
        first = c.source.strip().splitlines()[0][:60] if c.source.strip() else ""
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                out.append(
                    f"{path}: cell {i} was committed with an error output "
                    f"({o.get('ename')}): {first!r}"
                )
        draws, prints, defined = analyse(c.source, drawers)
        drawers |= defined
        if flagged(c.source):
            continue
        if (draws or "figure" in c.metadata.get("tags", [])) and not has_image(c):
            out.append(
                f"{path}: cell {i} draws a figure but has no image output: {first!r}"
            )
        if prints and not has_text(c):
            out.append(
                f"{path}: cell {i} calls print() but has no printed output: {first!r}"
            )
    return out


WIDGET_LIMIT = 50_000  # bytes of saved widget state in all the notebooks checked
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_bytes(path: Path) -> int:
    "Bytes of saved widget state in a notebook: its models and the views of them."
    nb = json.loads(Path(path).read_text())
    views = [
        o["data"][WIDGET_VIEW]
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if WIDGET_VIEW in o.get("data", {})
    ]
    return (
        len(json.dumps(nb["metadata"].get("widgets", {})))
        - 2
        + len(json.dumps(views))
        - 2
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    nbs = [Path(a) for a in argv] or sorted(Path("nbs").glob("*.ipynb"))
    errs = [p for nb in nbs for p in problems(nb) + figure_problems(nb)]
    widgets = sum(map(widget_bytes, nbs))
    if widgets > WIDGET_LIMIT:
        errs.append(
            f"{widgets:,} bytes of saved widget state (limit {WIDGET_LIMIT:,}): run "
            "`python dev/execute_nbs.py --strip-widgets-only` and commit"
        )
    for e in errs:
        print(e, file=sys.stderr)
    print(f"check_outputs: {len(nbs)} notebooks, {len(errs)} problems")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
