"""Outbound HTTP calls (webhooks, `http` actions, `http` conditions): one destination guard, one total deadline per
call, a capped answer, and errors that name the destination and the class of failure.

    DestinationPolicy, DestinationRefused   which hosts may be reached (guard.py)
    OutboundClient, OutboundError           the one way out (client.py)
    ManagedIdentityTokens                   Entra tokens for `auth: {"type": "managedIdentity"}` (identity.py)
"""

from engine.domain.extensions import destination_of, status_class
from engine.outbound.client import OutboundClient, OutboundError, OutboundResponse
from engine.outbound.guard import DestinationPolicy, DestinationRefused, Resolver, refusal
from engine.outbound.identity import ManagedIdentityTokens, TokenUnavailable

__all__ = [
    "DestinationPolicy", "DestinationRefused", "ManagedIdentityTokens", "OutboundClient", "OutboundError",
    "OutboundResponse", "Resolver", "TokenUnavailable", "destination_of", "refusal", "status_class",
]
