"""Rendering shared by every report: a Markdown summary as a self-contained HTML page.

One module, so that reports of every stage (data, attribution, words, checks) render
alike and none imports another stage's report to do it."""

from __future__ import annotations

HTML_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 3px; }
"""


def markdown_html(markdown: str, title: str) -> str:
    """A summary (topk.md, words.md) as a self-contained HTML page, for Snakemake's report,
    which shows HTML but not Markdown. Raw HTML in the text (a completion may hold some)
    is escaped, not rendered."""
    from html import escape

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{HTML_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
