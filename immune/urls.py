from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from apps.core import views as core_views

admin.site.site_header = "immune review console"
admin.site.site_title = "immune"
admin.site.index_title = "Work at a glance"
# The queue needs the width; the index and breadcrumbs already lead everywhere.
admin.site.enable_nav_sidebar = False

api_v1 = [
    path("auth/token/", core_views.TokenObtainView.as_view(), name="auth-token"),
    path("me/", core_views.MeView.as_view(), name="me"),
    path("", include("apps.advisories.urls")),
    path("", include("apps.inventory.urls")),
    path("", include("apps.reviews.urls")),
    path("", include("apps.console.urls")),
    path("", include("apps.decisions.urls")),
    path("", include("apps.wargaming.urls")),
    path("", include("apps.ml.urls")),
    path("", include("apps.ab_testing.urls")),
]

urlpatterns = [
    path("", core_views.home, name="home"),
    # The login form is rate limited per client address (django-ratelimit).
    path("admin/login/", core_views.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    # Authentication on everything but health (docs/configuration.md, "Security"): the
    # schema takes a token or a session (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]), the
    # docs pages send a browser without a session to the login form. Swagger UI's start-up
    # script is a file of its own (the split view), as the Content-Security-Policy needs.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="schema")),
         name="swagger-ui"),
    # ReDoc's "powered by" logo is the one asset it loads from its own CDN.
    path("api/redoc/", login_required(csp_update({"img-src": ["https://cdn.redoc.ly"]})(
        SpectacularRedocView.as_view(url_name="schema"))), name="redoc"),
    path("", include("apps.core.urls")),
    # Last: every other path under /api/ is a JSON 404, never Django's HTML page.
    re_path(r"^api/(?P<rest>.*)$", core_views.api_not_found, name="api-not-found"),
]

handler404 = "apps.core.views.json_not_found"
handler500 = "apps.core.views.json_server_error"
