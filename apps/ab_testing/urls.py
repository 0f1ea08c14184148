from django.urls import path

from apps.ab_testing import apis

urlpatterns = [
    path("wargaming/ml/accuracy", apis.AccuracyApi.as_view(), name="wargaming-ml-accuracy"),
    path("ab-testing/enable", apis.EnableApi.as_view(), name="ab-testing-enable"),
    path("ab-testing/disable", apis.DisableApi.as_view(), name="ab-testing-disable"),
    path("ab-testing/status", apis.StatusApi.as_view(), name="ab-testing-status"),
    path("ab-testing/results", apis.ResultsApi.as_view(), name="ab-testing-results"),
]
