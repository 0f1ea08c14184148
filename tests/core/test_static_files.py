"""Static files are served by the web process on every profile (issue 15), not only by
runserver: the console's script and Swagger UI's assets under uvicorn in development."""

from __future__ import annotations

from tests.faults import production_env, request, uvicorn


def test_the_development_profile_serves_static_files_under_uvicorn(tmp_path):
    env = production_env(DJANGO_ENV="development", DEBUG="true", DATABASE_URL="",
                         REDIS_URL="", IMMUNE_DATA_DIR=str(tmp_path),
                         ALLOWED_HOSTS="127.0.0.1,localhost")
    with uvicorn(env, tmp_path / "server.log") as base:
        for path in ("/static/immune/console.js",
                     "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
                     "/static/admin/css/base.css"):
            status, headers, _ = request(base + path)
            assert status == 200, path
            assert headers["Content-Type"].split(";")[0] in (
                "text/javascript", "application/javascript", "text/css"), path
        assert request(base + "/static/immune/nothing-here.js")[0] == 404
