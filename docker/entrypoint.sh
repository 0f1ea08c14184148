#!/bin/sh
# The image's entry point (under tini): the first argument picks the process.
#   web      uvicorn: HTTP + WebSocket on :8000 (WEB_CONCURRENCY workers)
#   worker   Celery worker (CELERY_CONCURRENCY processes); runs the wargame sandboxes
#   beat     Celery beat, exactly one per deployment (schedule in BEAT_SCHEDULE_FILE)
#   migrate  apply migrations, once per release before web/worker/beat roll
#   anything else is run as given (e.g. `python manage.py createsuperuser`)
set -eu
cmd=${1:-web}

# prometheus_client's multiprocess mode (several uvicorn or prefork processes per
# container): the folder must exist, and start empty for a new web server.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    if [ "$cmd" = web ]; then
        rm -rf "$PROMETHEUS_MULTIPROC_DIR"
    fi
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi
case "$cmd" in
    web)
        shift || true
        # --proxy-headers trusts X-Forwarded-For/-Proto only from FORWARDED_ALLOW_IPS (the
        # load balancer's addresses); empty (the image's default) trusts no proxy.
        exec uvicorn immune.asgi:application --host 0.0.0.0 --port 8000 \
            --workers "${WEB_CONCURRENCY:-2}" \
            --proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-}" \
            --timeout-graceful-shutdown 25 "$@"
        ;;
    worker)
        shift || true
        exec celery -A immune worker -l "${LOG_LEVEL:-info}" \
            --concurrency "${CELERY_CONCURRENCY:-2}" "$@"
        ;;
    beat)
        shift || true
        schedule=${BEAT_SCHEDULE_FILE:-/app/beat/celerybeat-schedule}
        mkdir -p "$(dirname "$schedule")"
        exec celery -A immune beat -l "${LOG_LEVEL:-info}" --schedule "$schedule" "$@"
        ;;
    migrate)
        shift || true
        exec python manage.py migrate --noinput "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
