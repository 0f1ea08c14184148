from django.urls import path

from apps.inventory import apis

urlpatterns = [
    path("projects/", apis.ProjectListApi.as_view(), name="project-list"),
    path("projects/<int:pk>/", apis.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<int:pk>/scan/", apis.ProjectScanApi.as_view(), name="project-scan"),
]
