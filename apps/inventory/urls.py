from django.urls import path

from apps.inventory import apis

urlpatterns = [
    path("projects/", apis.ProjectListApi.as_view(), name="project-list"),
    path("projects/<str:project>/", apis.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<str:project>/scan/", apis.ProjectScanApi.as_view(), name="project-scan"),
]
