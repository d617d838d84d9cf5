"""The method's pieces written from scratch, in a few readable lines each, as the chapters build them.

Each chapter writes its piece here first, asserts that it equals the package's tested
implementation on the same weights and inputs, and then uses the package;
``tests/test_from_scratch.py`` checks the same equalities on random inputs. These versions favour
reading over speed and input checks: use the package in real work.

- :mod:`.infonce`  chapter 2: InfoNCE with sentiment-aware negatives (= :func:`infoenh.infonce.sentiment_infonce`)
- :mod:`.fib`      chapter 3: FIB as an ``nn.Module`` (= :class:`infoenh.fib.FIB`)
- :mod:`.sinkhorn` chapter 4: Sinkhorn, scaling form (numpy) and log domain (= :func:`infoenh.ot.sinkhorn`)
- :mod:`.fia`      chapter 5: FIA's cost, plans and barycentric maps (= :func:`infoenh.fia.fia`)
- :mod:`.assembly` chapter 6: InfoEnh from FIB, InfoNCE and FIA (= :class:`infoenh.InfoEnh`)
"""
import inspect


def show(obj):
    """The source of a from-scratch piece as highlighted code, for a chapter to display
    (an ``IPython.display.Code``; plain text when IPython is missing)."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Code
    except ImportError:                      # pragma: no cover - outside Jupyter
        return source
    return Code(source, language="python")
