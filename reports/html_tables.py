"""Table building blocks for ``leaderboard.html``: escaped cells, sortable tables, filter controls.

A cell's sort key travels in ``data-v`` (a plain number for numeric columns, '' when missing, so
missing values sort last); a header's ``data-type="num"`` makes its column sort numerically.

>>> text_cell('<i>')
'<td class="text" data-v="&lt;i&gt;">&lt;i&gt;</td>'
>>> num_cell(0.51234, sd=0.02, ci=(0.4, 0.6), best=True)  # doctest: +NORMALIZE_WHITESPACE
'<td class="best" data-v="0.51234"><span class="m">0.512</span><span class="sd">± 0.020</span>\
<span class="ci">0.400 – 0.600</span></td>'
"""

from __future__ import annotations

from reports.html_common import esc, fmt, num


def text_cell(v, *, cls: str = "text", html: str | None = None) -> str:
    """A text cell; ``html`` (already escaped) replaces the shown content but not the sort key."""
    shown = esc(v) if html is None else html
    return f'<td class="{cls}" data-v="{esc(v)}">{shown}</td>'


def num_cell(v, *, sd=None, ci=None, best: bool = False, digits: int = 3, shown: str | None = None,
             cls: str = "") -> str:
    """A numeric cell: value, optional '± sd' and a 95% CI line; ``best`` highlights it."""
    val = num(v)
    inner = f'<span class="m">{fmt(val, digits) if shown is None else shown}</span>'
    if sd is not None and num(sd) is not None:
        inner += f'<span class="sd">± {fmt(num(sd), digits)}</span>'
    if ci is not None and all(num(c) is not None for c in ci):
        inner += f'<span class="ci">{fmt(num(ci[0]), digits)} – {fmt(num(ci[1]), digits)}</span>'
    classes = " ".join(c for c in (cls, "best" if best else "") if c)
    attr = f' class="{classes}"' if classes else ""
    return f'<td{attr} data-v="{"" if val is None else repr(val)}">{inner}</td>'


def int_cell(v) -> str:
    val = num(v)
    return f'<td data-v="{"" if val is None else int(val)}">{"–" if val is None else f"{int(val):,}"}</td>'


def th(label: str, *, numeric: bool = False, title: str = "", sort: str | None = None) -> str:
    """A header cell; ``sort`` ('ascending' / 'descending') marks the table's initial order."""
    attrs = ' data-type="num"' if numeric else ' class="text"'
    if title:
        attrs += f' title="{esc(title)}"'
    if sort:
        attrs += f' aria-sort="{sort}"'
    return f"<th{attrs}>{esc(label)}</th>"


def table(table_id: str, head: list[str], rows: list[str], *, short: bool = False, sortable: bool = True) -> str:
    """A scrollable table with a sticky header; ``head`` holds :func:`th` cells, ``rows`` whole ``<tr>``."""
    cls = ' class="sortable"' if sortable else ""
    wrap = "tablewrap short" if short else "tablewrap"
    return (f'<div class="{wrap}"><table id="{esc(table_id)}"{cls}><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def controls(table_id: str, *, placeholder: str = "filter rows", selects: list[tuple[int, str, list]] = ()) -> str:
    """A filter box plus one select per ``(column index, label, values)`` for the table ``table_id``."""
    parts = [f'<input class="filter" type="search" aria-label="filter rows" placeholder="{esc(placeholder)}">']
    for col, label, values in selects:
        opts = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
        parts.append(f'<select data-col="{int(col)}" aria-label="{esc(label)}"><option value="">all {esc(label)}'
                     f"</option>{opts}</select>")
    parts.append('<span class="count"></span>')
    return f'<div class="controls" data-table="{esc(table_id)}">{"".join(parts)}</div>'


def kv_grid(items: list[tuple[str, str]]) -> str:
    """Key figures as small cards; values are already-escaped HTML."""
    return '<div class="kv">' + "".join(f"<div><span>{esc(k)}</span><b>{v}</b></div>" for k, v in items) + "</div>"


def best_flags(values, *, higher: bool = True) -> list[bool]:
    """Which entries equal the column's best finite value (ties all flagged)."""
    nums = [num(v) for v in values]
    finite = [v for v in nums if v is not None]
    if not finite:
        return [False] * len(nums)
    top = max(finite) if higher else min(finite)
    return [v is not None and abs(v - top) <= 1e-12 for v in nums]
