from django.urls import path

from apps.decisions import apis

urlpatterns = [
    path("apvs/<str:code>/decisions/", apis.APVDecisionsApi.as_view(), name="apv-decisions"),
    path("decisions/", apis.DecisionListApi.as_view(), name="decision-list"),
    path("decisions/<int:pk>/", apis.DecisionDetailApi.as_view(), name="decision-detail"),
    path("decisions/<int:pk>/retry/", apis.DecisionRetryApi.as_view(), name="decision-retry"),
    path("decisions/<int:pk>/audit/", apis.DecisionAuditApi.as_view(), name="decision-audit"),
    path("audit/", apis.AuditListApi.as_view(), name="audit-list"),
]
