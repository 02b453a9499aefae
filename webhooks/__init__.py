"""The HTTP edge: GitHub webhook deliveries in, durable jobs out (see ``webhooks.app``)."""
from webhooks.app import ReceiverSettings, create_app

__all__ = ["ReceiverSettings", "create_app"]
