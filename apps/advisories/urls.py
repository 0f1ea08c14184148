from django.urls import path

from apps.advisories import apis

urlpatterns = [
    path("advisories/", apis.AdvisoryListApi.as_view(), name="advisory-list"),
    path("advisories/<str:osv_id>/", apis.AdvisoryDetailApi.as_view(), name="advisory-detail"),
]
