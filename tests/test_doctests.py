"""The examples in the docstrings of the harness's modules run and give what they show.

One case per module that has examples (a module without any would pass on import alone, so it gets no case);
each case also asserts that its examples ran, so an example turned into prose fails here.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("bench", "reports", "strategies", "backbones")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _all_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        mod = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, prefix=f"{package}.")
                  if not m.name.endswith("__main__")]
    return sorted(names)


def _examples(name: str) -> int:
    """How many examples the module's docstrings hold that run (``# doctest: +SKIP`` ones not counted)."""
    return sum(not ex.options.get(doctest.SKIP) for t in doctest.DocTestFinder().find(importlib.import_module(name))
               for ex in t.examples)


MODULES = _all_modules()
WITH_EXAMPLES = [name for name in MODULES if _examples(name)]


def test_the_modules_with_examples_are_found():
    assert 10 <= len(WITH_EXAMPLES) < len(MODULES)
    assert {"bench.data.splits", "reports.stats"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS, verbose=False, report=True)
    assert result.attempted >= _examples(name) > 0, f"{name}: {result.attempted} example(s) ran"
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring example(s) of {name} failed"
