"""The console's HTML: plain server-rendered pages, every value escaped, no script."""

from __future__ import annotations

import datetime as dt
from html import escape
from urllib.parse import quote

__all__ = ["page", "table", "form", "when", "link", "login_page"]

_STYLE = """body{font-family:sans-serif;margin:0;color:#222}
header{background:#1d3557;color:#fff;padding:.6em 1em}header a{color:#fff;margin-right:1em}
main{padding:1em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#eef}.SUCCEEDED{color:#2a7}.FAILED{color:#c22}.RUNNING,.QUEUED{color:#c80}
img.preview{width:128px;height:128px;object-fit:contain;background:#000}
.error{color:#c22}form.inline{display:inline}"""


def when(seconds: float) -> str:
    if not seconds:
        return ""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def table(headings, rows, *, raw_columns=(), row_id: str = "") -> str:
    """A table; cells are escaped except in ``raw_columns`` (HTML built here)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    body = []
    for row in rows:
        cells = "".join(f"<td>{c if k in raw_columns else escape(str(c))}</td>"
                        for k, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    ident = f' id="{escape(row_id)}"' if row_id else ""
    return f"<table{ident}><tr>{head}</tr>{''.join(body)}</table>"


def form(action: str, csrf: str, fields: str, button: str) -> str:
    return (f'<form method="post" action="{escape(action)}">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">{fields}'
            f'<button type="submit">{escape(button)}</button></form>')


def page(title: str, body: str, *, who: str = "", csrf: str = "", refresh: int = 0) -> str:
    """A whole page; ``refresh``: reload every so many seconds (live job states)."""
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    nav = ""
    if who:
        nav = (" ".join(link(f"/console/{p}", p.capitalize()) for p in
                        ("studies", "jobs", "deliveries", "usage"))
               + f' <span>{escape(who)}</span> '
               + form("/console/logout", csrf, "", "Log out").replace(
                   "<form ", '<form class="inline" '))
    return (f"<!doctype html><html><head><meta charset=\"utf-8\">{meta}"
            f"<title>{escape(title)} - medcompute</title><style>{_STYLE}</style></head>"
            f"<body><header><b>medcompute</b> {nav}</header><main><h1>{escape(title)}</h1>"
            f"{body}</main></body></html>")


def login_page(error: str = "", after: str = "/console/jobs") -> str:
    message = f'<p class="error">{escape(error)}</p>' if error else ""
    return page("Log in", f"""{message}
<form method="post" action="/console/login">
<input type="hidden" name="next" value="{escape(quote(after, safe='/'))}">
<label>API key <input type="password" name="key" id="key" size="60"
autocomplete="off"></label> <button type="submit" id="login">Log in</button></form>
<p>The key of a subscriber (medcompute admin create-key); without keys in the data
directory, a server on loopback takes an empty one.</p>""")
