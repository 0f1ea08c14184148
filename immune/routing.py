"""WebSocket routes (the HTTP routes are in immune.urls)."""

from django.urls import path

from apps.core.consumers import ReviewsConsumer

websocket_urlpatterns = [
    path("ws/reviews/", ReviewsConsumer.as_asgi()),
]
