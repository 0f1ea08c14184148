from django.urls import path

from apps.wargaming import apis

urlpatterns = [
    path("wargaming/validate", apis.ValidateApi.as_view(), name="wargaming-validate"),
    path("wargaming/runs/", apis.RunListApi.as_view(), name="wargaming-runs"),
    path("wargaming/runs/<int:pk>/", apis.RunDetailApi.as_view(), name="wargaming-run"),
    path("apvs/<str:code>/runs/", apis.APVRunsApi.as_view(), name="apv-runs"),
    path("patches/<int:pk>/runs/", apis.PatchRunsApi.as_view(), name="patch-runs"),
]
