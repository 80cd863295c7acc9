"""``make test-fast`` (the loop while editing) runs exactly the tests that carry neither ``slow`` nor ``cluster``;
``make test-slow`` runs exactly the others, so the two together are ``make test`` (two CI jobs, if one is too long).

Each marker expression is read from the Makefile and evaluated the way ``pytest -m`` evaluates it, over every test
this session collected: a typo in it, or a marker missing from it, selects a test of the other tier (or drops one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _pytest.mark import MarkMatcher
from _pytest.mark.expression import Expression

REPO = Path(__file__).resolve().parents[1]
END_TO_END = ("slow", "cluster")  # the tiers `make test` adds to `make test-fast`
# Makefile variable, target, whether the target's tests are the end-to-end ones
TIERS = [("FAST_TESTS", "test-fast", False), ("SLOW_TESTS", "test-slow", True)]


def expression(variable: str) -> str:
    found = re.search(rf"^{variable}\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert found, f"Makefile defines no {variable} (a tier's marker expression)"
    return found.group(1).strip()


@pytest.mark.parametrize("variable,target,end_to_end", TIERS)
def test_each_make_target_selects_exactly_its_tier(request, variable, target, end_to_end):
    text = expression(variable)
    registered = {line.split(":", 1)[0].strip() for line in request.config.getini("markers")}
    named = set(re.findall(r"[A-Za-z_]\w*", text)) - {"not", "and", "or"}
    assert named and named <= registered, f"{text!r} names markers pyproject does not register: {named - registered}"
    compiled = Expression.compile(text)
    wrong = [item.nodeid for item in request.session.items
             if compiled.evaluate(MarkMatcher.from_markers(item.iter_markers()))
             != (end_to_end == any(item.get_closest_marker(m) for m in END_TO_END))]
    assert not wrong, f"`make {target}` ({text!r}) selects or drops the wrong tests: {wrong[:5]}"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^{target}: .*\n\t.*-m '\$\({variable}\)'", makefile, re.M), f"{target} does not use {variable}"
    assert f"make {target}" in (REPO / "README.md").read_text()
