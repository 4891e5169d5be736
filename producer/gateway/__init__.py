"""The HTTP gateway: routeyard's API, the OpenAI Batch/Files API and signed webhooks (see `app.create_app`)."""

from producer.gateway.app import create_app

__all__ = ["create_app"]
