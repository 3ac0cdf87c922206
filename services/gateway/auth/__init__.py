"""Gateway authentication: keypairs, HMAC request signing, bearer tokens and the ASGI auth layer."""

from services.gateway.auth.keypairs import create_keypair, ensure_admin_keypair
from services.gateway.auth.principal import AuthError, Principal

__all__ = ["AuthError", "Principal", "create_keypair", "ensure_admin_keypair"]
