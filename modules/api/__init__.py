"""The A1111-compatible HTTP API (`/sdapi/v1`): `mount(app, runtime)` adds it to the one FastAPI app."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

API_PREFIX = "/sdapi/v1"


def mount(app: Any, runtime: Any, *, max_body: int | None = None) -> None:
    """Add the /sdapi/v1 routes and, with --api-auth, HTTP Basic on them and on the docs.

    Must run before the server starts (middleware cannot be added later) and before Gradio is mounted at /,
    so these routes are matched first.
    """
    from modules.api.auth import BasicAuthMiddleware, parse_credentials
    from modules.api.routes import MAX_BODY_BYTES, create_router
    from modules.api.routes_merger import create_merger_router
    from modules.api.routes_train import create_router as create_train_router

    opts = runtime.cmd_opts
    app.state.runtime = runtime
    app.state.api_settings = {
        "max_body": max_body or MAX_BODY_BYTES,
        "api_log": bool(getattr(opts, "api_log", False)),
        "cors_origins": [o for o in (getattr(opts, "cors_allow_origins", None) or "").split(",") if o],
        "cors_regex": getattr(opts, "cors_allow_origins_regex", None),
    }
    from modules.api.routes_extras import create_extras_router

    app.include_router(create_extras_router(), prefix=API_PREFIX, tags=["sdapi"])  # before: its /upscalers wins
    from modules.api import routes_extensions

    # Included first so that its /extensions (with load status) is the one matched.
    app.include_router(routes_extensions.create_router(), prefix=API_PREFIX, tags=["sdapi"])
    app.include_router(create_router(), prefix=API_PREFIX, tags=["sdapi"])
    app.include_router(create_merger_router(), prefix=API_PREFIX, tags=["sdapi"])
    app.include_router(create_train_router(), prefix=API_PREFIX, tags=["sdapi"])
    creds = parse_credentials(getattr(opts, "api_auth", None))
    if creds:
        app.add_middleware(BasicAuthMiddleware, creds=creds)
    elif getattr(opts, "webui_is_non_local", False):
        log.warning(
            "The API is reachable from the network without --api-auth: anyone who can reach this "
            "server can generate images and change settings."
        )
