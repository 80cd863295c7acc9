"""``make test-fast`` (the loop while editing) runs exactly the tests that carry neither ``slow`` nor ``cluster``.

The marker expression is read from the Makefile and evaluated the way ``pytest -m`` evaluates it, over every test
this session collected: a typo in it, or a marker missing from it, selects an end-to-end test (or drops a fast one).
"""

from __future__ import annotations

import re
from pathlib import Path

from _pytest.mark import MarkMatcher
from _pytest.mark.expression import Expression

REPO = Path(__file__).resolve().parents[1]
END_TO_END = ("slow", "cluster")  # the tiers `make test` adds to `make test-fast`


def fast_expression() -> str:
    found = re.search(r"^FAST_TESTS\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert found, "Makefile defines no FAST_TESTS (the marker expression of `make test-fast`)"
    return found.group(1).strip()


def test_make_test_fast_selects_every_test_without_an_end_to_end_marker_and_no_other(request):
    expression = fast_expression()
    registered = {line.split(":", 1)[0].strip() for line in request.config.getini("markers")}
    named = set(re.findall(r"[A-Za-z_]\w*", expression)) - {"not", "and", "or"}
    assert named and named <= registered, f"{expression!r} names markers pyproject does not register: {named - registered}"
    compiled = Expression.compile(expression)
    wrong = [item.nodeid for item in request.session.items
             if compiled.evaluate(MarkMatcher.from_markers(item.iter_markers()))
             == any(item.get_closest_marker(m) for m in END_TO_END)]
    assert not wrong, f"`make test-fast` ({expression!r}) selects or drops the wrong tests: {wrong[:5]}"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test-fast: .*\n\t.*-m '\$\(FAST_TESTS\)'", makefile, re.M), "test-fast does not use FAST_TESTS"
    assert "make test-fast" in (REPO / "README.md").read_text()
