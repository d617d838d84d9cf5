"""The method's pieces written from scratch, in a few readable lines each, as the chapters build them.

Each chapter writes its piece here first, asserts that it equals the package's tested
implementation on the same weights and inputs, and then uses the package;
``tests/test_from_scratch.py`` checks the same equalities on random inputs. These versions favour
reading over speed and input checks: use the package in real work.

- :mod:`.infonce`  chapter 2: InfoNCE with sentiment-aware negatives (= :func:`infoenh.infonce.sentiment_infonce`)
- :mod:`.fib`      chapter 3: FIB as an ``nn.Module`` (= :class:`infoenh.fib.FIB`)
"""
