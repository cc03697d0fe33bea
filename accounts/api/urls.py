from django.urls import path

from accounts.api.views import TokenView

urlpatterns = [path("token/", TokenView.as_view(), name="auth-token")]
