from django.urls import path

from apps.reviews import apis

urlpatterns = [
    path("apvs/", apis.APVListApi.as_view(), name="apv-list"),
    path("patches/", apis.PatchListApi.as_view(), name="patch-list"),
    path("patches/<int:pk>/", apis.PatchDetailApi.as_view(), name="patch-detail"),
    path("apvs/<str:code>/patches/", apis.APVPatchesApi.as_view(), name="apv-patches"),
    path("projects/<str:project>/report.sarif", apis.ProjectSarifApi.as_view(),
         name="project-report-sarif"),
    path("projects/<str:project>/report.cdx.json", apis.ProjectCycloneDxApi.as_view(),
         name="project-report-cyclonedx"),
]
