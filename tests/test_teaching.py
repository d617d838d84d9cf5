"""Classroom tools: the automatic checks catch wrong answers, and student versions of notebooks
lose their solutions, keep their checks, run from top to bottom, and catch a wrong answer."""
from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from infoenh.cli import main as cli_main
from infoenh.teaching import (
    ExerciseError, check_answer, check_barycentric_map, check_cosine_cost, check_function, check_hard_mask,
    check_infonce, check_metric, check_sinkhorn, check_topk,
)
from infoenh.teaching.student import has_exercises, make_student_notebook

ROOT = Path(__file__).resolve().parents[1]


def numpy_sinkhorn(cost, reg, n_iter=5000):
    n, m = cost.shape
    K = np.exp(-cost / reg)
    u, v = np.ones(n), np.ones(m)
    for _ in range(n_iter):
        u = (1 / n) / (K @ v)
        v = (1 / m) / (K.T @ u)
    return u[:, None] * K * v[None, :]


def log_sinkhorn(cost, reg, n_iter=5000):
    from scipy.special import logsumexp

    n, m = cost.shape
    f, g = np.zeros(n), np.zeros(m)
    for _ in range(n_iter):
        f = -reg * logsumexp((g[None, :] - cost) / reg, axis=1) + reg * np.log(1 / n)
        g = -reg * logsumexp((f[:, None] - cost) / reg, axis=0) + reg * np.log(1 / m)
    return np.exp((f[:, None] + g[None, :] - cost) / reg)


def test_sinkhorn_check_accepts_a_correct_answer_and_rejects_wrong_ones(capsys):
    assert check_sinkhorn(numpy_sinkhorn)
    assert "✔ sinkhorn" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="marginals are off"):
        check_sinkhorn(lambda c, r: numpy_sinkhorn(c, r, n_iter=1) * 1.5)
    with pytest.raises(ExerciseError, match="largest difference"):
        check_sinkhorn(lambda c, r: numpy_sinkhorn(c.T.copy().T * 1.1, r))  # wrong cost
    with pytest.raises(ExerciseError, match="shape"):
        check_sinkhorn(lambda c, r: numpy_sinkhorn(c, r)[:, :-1])
    with pytest.raises(ExerciseError, match="not written yet"):
        check_sinkhorn(lambda c, r: (_ for _ in ()).throw(NotImplementedError("todo")))


def test_small_reg_case_separates_scaling_from_log_domain():
    with np.errstate(all="ignore"), pytest.raises(ExerciseError, match="NaN|marginals|difference"):
        check_sinkhorn(numpy_sinkhorn, small_reg=True)
    assert check_sinkhorn(log_sinkhorn, small_reg=True)


def test_cosine_topk_mask_checks():
    def cosine(x, y):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        return 1 - x @ y.T

    assert check_cosine_cost(cosine)
    with pytest.raises(ExerciseError):
        check_cosine_cost(lambda x, y: -(x @ y.T))

    def topk(scores, mask, k):
        s = np.where(mask, scores, -np.inf)
        idx = np.argsort(-s, kind="stable")[: min(k, int(mask.sum()))]
        return np.sort(idx)

    assert check_topk(topk)
    with pytest.raises(ExerciseError, match="padded steps"):
        check_topk(lambda s, m, k: np.sort(np.argsort(-s)[:k]))  # ignores the mask

    assert check_hard_mask(lambda g, t: ((g > t) * 1.0, (g > t) * g))
    with pytest.raises(ExerciseError, match="strictly above"):
        check_hard_mask(lambda g, t: ((g >= t) * 1.0, (g >= t) * g))


def test_infonce_and_metric_checks():
    import torch
    from infoenh.infonce import sentiment_infonce

    def mine(e, z, labels, tau):
        return sentiment_infonce(torch.tensor(e)[:, None], torch.tensor(z)[:, None], torch.tensor(labels),
                                 tau=tau, negatives="sign").loss

    assert check_infonce(mine)
    with pytest.raises(ExerciseError):
        check_infonce(lambda e, z, y, tau: mine(e, z, y, 2 * tau))

    assert check_metric(lambda p, t: np.mean(np.abs(p - t)), "MAE")
    half_away = lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5)  # noqa: E731
    acc7_wrong = lambda p, t: np.mean(half_away(np.clip(p, -3, 3)) == half_away(np.clip(t, -3, 3)))  # noqa: E731
    acc7_right = lambda p, t: np.mean(np.round(np.clip(p, -3, 3)) == np.round(np.clip(t, -3, 3)))  # noqa: E731
    assert check_metric(acc7_right, "Mult_acc_7")
    with pytest.raises(ExerciseError, match="ties round to even"):
        check_metric(acc7_wrong, "Mult_acc_7")
    with pytest.raises(ValueError, match="unknown metric"):
        check_metric(acc7_right, "Acc7")
    assert check_answer(0.5, 0.5)
    with pytest.raises(ExerciseError):
        check_answer(0.4, 0.5)


def test_barycentric_map_check_needs_each_rows_own_mass():
    def barycentric(plan, target):
        a = plan.sum(1, keepdims=True)
        return np.where(a > 0, plan @ target / np.where(a > 0, a, 1.0), 0.0)

    assert check_barycentric_map(barycentric)
    k_times = lambda P, T: P.shape[0] * (P @ T)  # noqa: E731  right only without padding
    with pytest.raises(ExerciseError, match="padding.*largest difference"):
        check_barycentric_map(k_times)
    with np.errstate(all="ignore"), pytest.raises(ExerciseError, match="NaN"):
        check_barycentric_map(lambda P, T: P @ T / P.sum(1, keepdims=True))  # 0 / 0 on padded steps
    with pytest.raises(ExerciseError, match="no padding.*largest difference"):
        check_barycentric_map(lambda P, T: P @ T)  # forgot to divide by the mass
    with pytest.raises(ExerciseError, match="shape"):
        check_barycentric_map(lambda P, T: (P @ T).T)

def test_function_check_compares_every_case_and_reports_stubs(capsys):
    import torch

    cases = [("tau 0.5", (0.5,), np.log1p(np.exp(-4.0))), ("tau 1", (1.0,), torch.tensor(np.log1p(np.exp(-2.0))))]
    assert check_function(lambda tau: np.log1p(np.exp(-2 / tau)), cases, name="ceiling")
    assert "✔ ceiling: correct (2 cases)" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match="case tau 1: largest difference"):
        check_function(lambda tau: np.log1p(np.exp(-4.0)), cases, name="ceiling")  # fits one case only
    pair = [("counts", (3, 1), (0.75, torch.tensor(0.5)))]
    assert check_function(lambda a, b: (a / (a + b), torch.tensor(0.5, requires_grad=True)), pair)
    with pytest.raises(ExerciseError, match="shape"):
        check_function(lambda a, b: a / (a + b), pair)
    with pytest.raises(ExerciseError, match="not written yet"):
        check_function(lambda a, b: (_ for _ in ()).throw(NotImplementedError("todo")), pair)
    with pytest.raises(ExerciseError, match="returned None"):
        check_function(lambda a, b: None, pair)
    with pytest.raises(ExerciseError, match="could not read"):
        check_function(lambda a, b: "three quarters", pair)
    with pytest.raises(ValueError, match="at least one"):
        check_function(lambda: 0, [])

def _fixture_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter\n\nSome prose."),
        nbformat.v4.new_code_cell("import numpy as np\nfrom infoenh.teaching import check_cosine_cost"),
        nbformat.v4.new_markdown_cell(
            "```{exercise}\n:label: ex-cos\nWrite the cosine cost.\n```\n\n"
            "````{solution} ex-cos\n:class: dropdown\nNormalise rows.\n```python\nx / norm\n```\n````\n\nAfter."),
        nbformat.v4.new_code_cell(
            "def cosine(x, y):\n    # BEGIN SOLUTION\n    x = x / np.linalg.norm(x, axis=1, keepdims=True)\n"
            "    y = y / np.linalg.norm(y, axis=1, keepdims=True)\n    return 1 - x @ y.T\n    # END SOLUTION",
            metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("check_cosine_cost(cosine)", metadata={"tags": ["check"]}),
        nbformat.v4.new_code_cell("print('the chapter goes on')"),
    ]
    return nb


def _run(nb, tmp_path):
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _text(cell):
    return "".join(o.get("text", "") + "".join(o.get("traceback", [])) + o.get("evalue", "") for o in cell.outputs)


def test_student_version_strips_solutions_and_keeps_checks():
    teacher = _fixture_notebook()
    student = make_student_notebook(teacher)
    md = student.cells[2].source
    assert "{exercise}" in md and "After." in md
    assert "{solution}" not in md and "Normalise rows" not in md
    code = student.cells[3].source
    assert code.startswith("def cosine(x, y):") and "NotImplementedError" in code and "linalg" not in code
    assert "raises-exception" in student.cells[3].metadata["tags"]
    assert student.cells[4].source == "check_cosine_cost(cosine)"
    assert "raises-exception" in student.cells[4].metadata["tags"]
    assert teacher.cells[3].source.count("linalg") == 2, "the teacher's notebook must not be modified"


def test_student_version_strips_the_colab_editions_solutions():
    """The committed notebooks are the Colab edition: solutions are <details> blocks there."""
    nb = _fixture_notebook()
    nb.cells[2].source = ("**Exercise 1**\n\nWrite the cosine cost.\n\n<details>\n<summary>Solution to Exercise 1"
                          "</summary>\n\nNormalise rows.\n\n```python\nx / norm\n```\n\n</details>\n\nAfter.\n\n"
                          "<details>\n<summary>Why cosine?</summary>\n\nScale-free.\n\n</details>")
    nb.cells.insert(3, nbformat.v4.new_markdown_cell(
        "<details>\n<summary>Solution to Exercise 1</summary>\n\nA gated solution.\n\n</details>",
        metadata={"tags": ["solution"]}))
    student = make_student_notebook(nb)
    md = "\n".join(c.source for c in student.cells if c.cell_type == "markdown")
    assert "**Exercise 1**" in md and "After." in md and "Why cosine?" in md
    assert "Normalise rows" not in md and "A gated solution" not in md and "<summary>Solution" not in md


def test_student_version_runs_and_catches_a_wrong_answer(tmp_path):
    teacher = _run(_fixture_notebook(), tmp_path)
    assert "✔ cosine_cost" in _text(teacher.cells[4])

    student = _run(make_student_notebook(_fixture_notebook()), tmp_path)
    assert "not written yet" in _text(student.cells[4])
    assert "the chapter goes on" in _text(student.cells[5]), "the student version must run to the end"

    wrong = make_student_notebook(_fixture_notebook())
    wrong.cells[3].source = wrong.cells[3].source.replace(
        'raise NotImplementedError("exercise: write your answer here")', "return -(x @ y.T)")
    wrong = _run(wrong, tmp_path)
    assert "ExerciseError" in _text(wrong.cells[4]) and "largest difference" in _text(wrong.cells[4])


def test_cli_writes_student_versions(tmp_path, capsys):
    src = tmp_path / "ch.ipynb"
    nbformat.write(_fixture_notebook(), src)
    assert cli_main(["teach", "student", str(src), "--out", str(tmp_path / "student")]) == 0
    out = nbformat.read(tmp_path / "student" / "ch.ipynb", as_version=4)
    assert out.metadata["infoenh"]["student_version"] and "NotImplementedError" in out.cells[3].source
    assert cli_main(["teach", "student", str(tmp_path / "nope.ipynb"), "--out", str(tmp_path)]) == 1


CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_has_checked_exercises_and_a_clean_student_version(path):
    nb = nbformat.read(path, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    if "**Exercise" not in md:
        pytest.skip(f"{path.name} has no exercises")
    assert has_exercises(nb), f"{path.name}: exercises need a code cell tagged 'solution' (see infoenh.teaching.student)"
    assert any(c.cell_type == "code" and "check" in c.metadata.get("tags", []) for c in nb.cells), (
        f"{path.name}: exercises need a code cell tagged 'check' calling infoenh.teaching")
    student = make_student_notebook(nb)
    for c in student.cells:
        assert "# BEGIN SOLUTION" not in c.source
        if c.cell_type == "markdown":
            assert "{solution" not in c.source and "<summary>Solution" not in c.source, (
                f"{path.name}: a solution survived in the student version")
    exercises = sum(c.source.count("**Exercise") for c in student.cells if c.cell_type == "markdown")
    assert exercises == md.count("**Exercise"), f"{path.name}: the student version lost an exercise"


def test_saved_tensor_bytes_counts_each_storage_once():
    import torch

    from infoenh.teaching import saved_tensor_bytes

    x = torch.rand(100, 10, dtype=torch.float64, requires_grad=True)
    y, n = saved_tensor_bytes(lambda: (x * x).sum())   # saves x twice: one storage
    assert n == 100 * 10 * 8 and float(y.detach()) > 0
    _, n2 = saved_tensor_bytes(lambda: (x.exp() * 2).sum())  # exp saves its result (a new storage)
    assert n2 == 100 * 10 * 8
    with torch.no_grad():
        _, n0 = saved_tensor_bytes(lambda: (x * x).sum())
    assert n0 == 0
