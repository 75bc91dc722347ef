"""The sales page under /ui: sign-in, lead list, lead page with feedback, summary. Server-rendered, no JS.

Every page needs a session (see `session.py`); every form carries a CSRF token checked on POST; every value
reaches the page through Jinja2 with autoescape on (`responses.py`). One module per page: `signin`, `leads`
(the list and a lead's page), `summary`; `format` holds the labels and formatting they share.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from leadscore.serve.ui import leads, signin, summary
from leadscore.serve.ui.responses import HERE


def mount(app: FastAPI) -> None:
    """Serve the sales page under /ui on `app`."""
    for module in (signin, leads, summary):
        app.include_router(module.router, include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
