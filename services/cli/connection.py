"""Finds the instance to talk to: ``BERTH_ENDPOINT`` + keys, else the instance file of ``berth up``."""

from __future__ import annotations

import os

from services.sdk.client import BerthClient
from services.sdk.instance import read_instance
from services.common.settings import default_data_dir

__all__ = ["connect_client"]


def connect_client() -> BerthClient:
    """Returns a client for the configured endpoint; raises ``InstanceNotFoundError`` when there is none."""
    endpoint = os.environ.get("BERTH_ENDPOINT")
    if endpoint:
        access_key = os.environ.get("BERTH_ACCESS_KEY", "")
        secret_key = os.environ.get("BERTH_SECRET_KEY", "")
        return BerthClient(endpoint, access_key, secret_key)
    instance = read_instance(default_data_dir())
    return BerthClient(instance.gateway_url, instance.access_key, instance.secret_key)
