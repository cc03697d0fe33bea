from django.urls import path

from apitokens.api.views import TokenView

urlpatterns = [path("token/", TokenView.as_view(), name="auth-token")]
