from django.urls import path

from apps.reviews import apis

urlpatterns = [
    path("apvs/", apis.APVListApi.as_view(), name="apv-list"),
    path("patches/", apis.PatchListApi.as_view(), name="patch-list"),
    path("patches/<int:pk>/", apis.PatchDetailApi.as_view(), name="patch-detail"),
]
