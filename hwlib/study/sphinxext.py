"""A small Sphinx extension for the book: each script once per page.

Sphinx 7.4 (the line jupyter-book 1.x requires) adds inline scripts registered by extensions
twice to every page (fixed upstream in Sphinx 8.2); the second copy of sphinx-thebe's
``const THEBE_JS_URL`` then raises a SyntaxError in the browser. This drops the duplicates.
"""

from __future__ import annotations

from typing import Any


def _dedupe_scripts(app, pagename: str, templatename: str, context: dict[str, Any],
                    doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    kept = []
    for js in scripts:
        attributes = getattr(js, "attributes", None)
        if attributes is None:  # a plain file name
            key: tuple = (str(js),)
        else:  # same file (or inline body) and attributes, whatever the priority
            key = (js.filename or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app) -> dict[str, Any]:
    """Register the page-context hook."""
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
