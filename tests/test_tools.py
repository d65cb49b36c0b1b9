"Tests of the course tools: student edition and output checks, on tiny fixture notebooks."
import sys
from pathlib import Path
import nbformat
from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell, new_output

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
import make_student, check_outputs

def _nb(tmp_path):
    sol = new_code_cell('answer_1 = 2'); sol.metadata['tags'] = ['solution']
    nb = new_notebook(cells=[new_markdown_cell('# T'), new_markdown_cell('Exercise 1: compute 1+1.'),
                             sol, new_code_cell('assert answer_1 == 1 + 1')])
    src = tmp_path / 'nbs'; src.mkdir()
    nbformat.write(nb, src / '01_x.ipynb')
    return src

def test_student_removes_solution_keeps_check(tmp_path):
    dest = make_student.build(_nb(tmp_path), tmp_path / '_student')
    nb = nbformat.read(dest / '01_x.ipynb', as_version=4)
    srcs = [c.source for c in nb.cells]
    assert 'answer_1 = 2' not in srcs
    assert 'assert answer_1 == 1 + 1' in srcs
    assert not any('solution' in c.metadata.get('tags', []) for c in nb.cells)

def test_check_outputs_flags_figure_without_image(tmp_path):
    fig = new_code_cell('plt.plot([1, 2]); plt.show()')
    txt = new_code_cell('print(1)', outputs=[new_output('stream', name='stdout', text='1\n')])
    p = tmp_path / '02_y.ipynb'
    nbformat.write(new_notebook(cells=[txt, fig]), p)
    probs = check_outputs.problems(p)
    assert len(probs) == 1 and 'cell 1' in probs[0] and '02_y' in probs[0]
    fig.outputs = [new_output('display_data', data={'image/png': 'iVBOR', 'text/plain': '<Figure>'})]
    nbformat.write(new_notebook(cells=[txt, fig]), p)
    assert check_outputs.problems(p) == []

def test_check_outputs_flags_unexecuted_and_skips_slow(tmp_path):
    p = tmp_path / '03_z.ipynb'
    nbformat.write(new_notebook(cells=[new_code_cell('x = 1'), new_code_cell('#| slow\nplt.plot([1])')]), p)
    probs = check_outputs.problems(p)
    assert len(probs) == 1 and 'no outputs' in probs[0]
