"""`/docs`: the API browser (Swagger UI) served by the hub itself, so it works offline and calls no third party.

The assets come from the `swagger-ui-bundle` package (docs/adr/0002-api-browser-served-by-the-hub.md). The page
holds no inline script, so every response here carries a policy allowing only the hub's own origin.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, render_template_string, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

# Swagger UI sets style attributes from script, hence 'unsafe-inline' for styles only; its CSS inlines icons as
# data: URIs. Scripts, requests and everything else stay on the hub's own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# The files of swagger-ui-dist the page uses; nothing else in the package directory is served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-16x16.png", "favicon-32x32.png"})
INITIALISER = "hashfed-docs.js"

# BaseLayout: no top bar with a box to load other specs. validatorUrl null: no badge fetched from validator.swagger.io.
# The spec URL comes from the page's data attribute, so the script is static.
INITIALISER_JS = """\
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null
  });
});
"""

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{{ title }}</title>
  <link rel="stylesheet" href="{{ url_for('apidocs.asset', name='swagger-ui.css') }}">
  <link rel="icon" type="image/png" sizes="32x32" href="{{ url_for('apidocs.asset', name='favicon-32x32.png') }}">
  <link rel="icon" type="image/png" sizes="16x16" href="{{ url_for('apidocs.asset', name='favicon-16x16.png') }}">
</head>
<body>
  <div id="swagger-ui" data-spec-url="{{ spec_url }}"></div>
  <script src="{{ url_for('apidocs.asset', name='swagger-ui-bundle.js') }}"></script>
  <script src="{{ url_for('apidocs.initialiser') }}"></script>
</body>
</html>
"""

bp = Blueprint("apidocs", __name__)


@bp.after_request
def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.route("/docs")
def page() -> str:
    """The API browser for the hub's OpenAPI document."""
    return render_template_string(
        PAGE, title=f"{current_app.config['API_TITLE']} API", spec_url=url_for("api-docs.openapi_json")
    )


@bp.route(f"/docs/{INITIALISER}")
def initialiser() -> Response:
    return Response(INITIALISER_JS, mimetype="text/javascript")


@bp.route("/docs/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound()
    return send_from_directory(str(swagger_ui_path), name)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
