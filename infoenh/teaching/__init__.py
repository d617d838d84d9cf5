"""Classroom support: automatic checks students call from the notebooks, and the tool that turns
the book's chapters into student versions (solutions removed, checks kept).

- :mod:`infoenh.teaching.checks`   ``check_*`` functions comparing a student's answer with the package
- :mod:`infoenh.teaching.student`  ``make_student_notebook`` and ``write_student_versions``
- :mod:`infoenh.teaching.glue`     ``glue(name, value)``: a number the prose quotes, bound to its cell;
  ``claim(holds, statement)``: a statement the prose makes, checked where it is computed
- :mod:`infoenh.teaching.measure`  ``saved_tensor_bytes(fn)``: the memory autograd keeps for a backward pass
- :mod:`infoenh.teaching.style`    ``use_book_style()``, ``figsize()``, ``print_wrapped()``: one seaborn theme, column-wide figures and output lines
- ``infoenh teach student notebooks/*.ipynb --out student/``  the same from the command line
- :mod:`infoenh.teaching.colab`    the Colab edition: each chapter's ``.ipynb`` generated from its MyST
  ``.md`` (``python -m infoenh.teaching.colab [--sync | --check]``), with
  :mod:`~infoenh.teaching.myst_markdown` (MyST -> plain Markdown), :mod:`~infoenh.teaching.bibliography`
  (references.bib), :mod:`~infoenh.teaching.book_index` (_config.yml, _toc.yml) and
  :mod:`~infoenh.teaching.markup_check` (what Colab would show raw)
"""
from .checks import (
    ExerciseError,
    check_answer,
    check_barycentric_map,
    check_cosine_cost,
    check_function,
    check_hard_mask,
    check_infonce,
    check_metric,
    check_sinkhorn,
    check_topk,
)
from .glue import claim, glue
from .measure import saved_tensor_bytes
from .style import figsize, print_wrapped, use_book_style

__all__ = [
    "ExerciseError", "check_answer", "check_barycentric_map", "check_cosine_cost", "check_function",
    "check_hard_mask", "check_infonce", "check_metric", "check_sinkhorn", "check_topk",
    "claim", "figsize", "glue", "print_wrapped", "saved_tensor_bytes", "use_book_style",
]
