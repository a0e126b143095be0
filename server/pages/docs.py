"""/docs and /redoc served entirely from this server: Swagger UI and ReDoc are vendored from
their npm packages under static/vendor/ (versions and licences in static/vendor/README.md),
so the API docs work on a network cut off from the internet."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER = "/static/vendor/swagger-ui-dist-5.35.0"
REDOC = "/static/vendor/redoc-2.5.4"


def router(app: FastAPI) -> APIRouter:
    api = APIRouter(include_in_schema=False)
    openapi_url = app.openapi_url or "/openapi.json"

    @api.get("/docs")
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
            # no validator badge: it would send the schema to validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    @api.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            redoc_js_url=f"{REDOC}/redoc.standalone.js",
            redoc_favicon_url=f"{SWAGGER}/favicon-32x32.png",
            with_google_fonts=False,
        )

    return api
