from django.urls import path

from apps.reviews import apis

urlpatterns = [
    path("apvs/", apis.APVListApi.as_view(), name="apv-list"),
    path("apvs/stats/", apis.APVStatsApi.as_view(), name="apv-stats"),
    path("apvs/<str:code>/", apis.APVDetailApi.as_view(), name="apv-detail"),
    path("patches/", apis.PatchListApi.as_view(), name="patch-list"),
    path("patches/<int:pk>/", apis.PatchDetailApi.as_view(), name="patch-detail"),
]
