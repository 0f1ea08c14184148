from django.urls import path

from apps.ml import apis

urlpatterns = [
    path("wargaming/ml-first", apis.MlFirstApi.as_view(), name="wargaming-ml-first"),
    path("ml/models/", apis.ModelListApi.as_view(), name="ml-models"),
    path("ml/models/<int:version>/", apis.ModelDetailApi.as_view(), name="ml-model"),
    path("ml/models/<int:version>/activate", apis.ModelActivateApi.as_view(),
         name="ml-model-activate"),
    path("ml/train", apis.TrainApi.as_view(), name="ml-train"),
    path("ml/predictions/", apis.PredictionListApi.as_view(), name="ml-predictions"),
]
