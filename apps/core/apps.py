from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        import gc

        from django.conf import settings

        # The breakers exist, and show in /health/components, before their first call.
        from apps.core import queue  # noqa: F401
        from apps.core.roles import sync_roles_after_migrate

        if settings.CACHES["default"]["BACKEND"].startswith("apps.core.cache."):
            from apps.core import cache  # noqa: F401

        from celery.signals import worker_init, worker_process_shutdown

        from apps.core import worker_metrics

        worker_init.connect(worker_metrics.on_worker_init, weak=False)
        worker_process_shutdown.connect(worker_metrics.on_child_exit, weak=False)

        if settings.GC_THRESHOLDS:
            gc.set_threshold(*settings.GC_THRESHOLDS)

        # Permissions are created post_migrate, so role grants are (re)applied then,
        # picking up the permissions of each domain app as it arrives.
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="immune.core.roles")

        import atexit

        atexit.register(_close_pools)


def _close_pools() -> None:
    """A process ending while PostgreSQL is down must not wait on its pool's reconnection
    attempts (psycopg_pool keeps trying for minutes)."""
    from django.db import connections

    for alias in connections:
        connection = connections[alias]
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()
