"""Celery tasks of the notifications app: thin, take ids, safe to run twice."""

from celery import Task
from django.conf import settings

from apps.core.instrumentation import instrumented_task
from apps.notifications.errors import DeliveryError
from apps.notifications.services import delivery_send, notifications_detect


@instrumented_task(name="notifications.detect")
def detect() -> dict:
    """Beat, every minute: record new events and enqueue their sends."""
    return notifications_detect().as_dict()


class SendTask(Task):
    """Run in-process (no broker, tasks eager), a send that fails is retried at once by
    Celery's autoretry and recorded on its Delivery row, never raised into whoever
    enqueued it (the detection pass): eager runs of this task do not propagate."""

    def apply(self, args=None, kwargs=None, *, throw=None, **options):
        return super().apply(args, kwargs, throw=bool(throw), **options)


@instrumented_task(
    name="notifications.deliver", base=SendTask, bind=True, acks_late=True,
    autoretry_for=(DeliveryError,), max_retries=settings.NOTIFY_MAX_RETRIES,
    retry_backoff=settings.NOTIFY_RETRY_BACKOFF_S,
    retry_backoff_max=settings.NOTIFY_RETRY_BACKOFF_MAX_S, retry_jitter=True,
    rate_limit=settings.NOTIFY_TASK_RATE_LIMIT,
)
def deliver(self, delivery_id: int) -> str:
    """Send one delivery. A failure is retried with exponential backoff; the last allowed
    attempt records ``failed`` instead of raising."""
    return delivery_send(delivery_id=delivery_id,
                         final_attempt=self.request.retries >= self.max_retries)
