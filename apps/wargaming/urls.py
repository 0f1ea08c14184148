from django.urls import path

from apps.wargaming import apis

urlpatterns = [
    path("wargaming/validate", apis.ValidateApi.as_view(), name="wargaming-validate"),
    path("wargaming/runs/<int:pk>/", apis.RunDetailApi.as_view(), name="wargaming-run"),
]
