from django.urls import path

from apps.console import apis

urlpatterns = [
    path("apvs/stats/", apis.APVStatsApi.as_view(), name="apv-stats"),
    path("apvs/<str:code>/", apis.APVDetailApi.as_view(), name="apv-detail"),
]
