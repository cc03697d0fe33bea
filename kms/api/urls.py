from rest_framework.routers import SimpleRouter

from kms.api.views import KeyViewSet, ServiceAuthorizationViewSet

router = SimpleRouter()
router.register("keys", KeyViewSet, basename="kms-key")
router.register(
    "service-authorizations", ServiceAuthorizationViewSet, basename="kms-service-authorization"
)
urlpatterns = router.urls
