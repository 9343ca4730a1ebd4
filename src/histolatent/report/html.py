"""A self-contained HTML report: sections of text, figures and tables.

Figures are copied next to the page (``report/figures/``) so the folder can be zipped or
served as it is.
"""

from __future__ import annotations

import html
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histolatent.io.atomic import write_text_atomic

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #8a2b6f;padding-bottom:.3em} h2{color:#8a2b6f;margin-top:2em}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #ddd} figcaption{color:#555;font-size:.9em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f4eef3} td:first-child,th:first-child{text-align:left} .meta{color:#777;font-size:.85em}
.error{background:#fee;border:1px solid #c33;padding:.5em;white-space:pre-wrap;font-family:monospace}
"""


@dataclass
class Section:
    """One stage of a report."""

    title: str
    text: str = ""
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png path, caption)
    tables: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)  # (caption, rows)
    seconds: float | None = None
    error: str | None = None


def _table_html(caption: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f"<p><em>{html.escape(caption)}: no rows</em></p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def write_report(out_dir: str | os.PathLike, sections: list[Section], *, title: str,
                 meta: str = "") -> Path:
    """Write ``out_dir/report/index.html`` with its figures; returns the page's path."""
    report = Path(out_dir) / "report"
    fig_dir = report / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if meta:
        parts.append(f"<p class='meta'>{html.escape(meta)}</p>")
    parts.append("<ul>" + "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>"
                                  for i, s in enumerate(sections)) + "</ul>")
    for i, s in enumerate(sections):
        took = f" <span class='meta'>({s.seconds:.1f} s)</span>" if s.seconds is not None else ""
        parts.append(f"<h2 id='s{i}'>{html.escape(s.title)}{took}</h2>")
        if s.error:
            parts.append(f"<div class='error'>{html.escape(s.error)}</div>")
        if s.text:
            parts.extend(f"<p>{html.escape(p)}</p>" for p in s.text.strip().split("\n\n"))
        for caption, rows in s.tables:
            parts.append(_table_html(caption, rows))
        for src, caption in s.figures:
            src = Path(src)
            dest = fig_dir / f"{i:02d}-{src.name}"
            if src.resolve() != dest.resolve():
                shutil.copyfile(src, dest)
            parts.append(f"<figure><img src='figures/{dest.name}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return write_text_atomic(report / "index.html", "\n".join(parts))
