from django.urls import path

from apps.core import views

urlpatterns = [
    path("health", views.health_basic, name="health"),
    path("health/live", views.health_live, name="health-live"),
    path("health/ready", views.health_ready, name="health-ready"),
    path("health/startup", views.health_startup, name="health-startup"),
    path("health/components", views.health_components, name="health-components"),
    path("metrics", views.metrics, name="metrics"),
]
