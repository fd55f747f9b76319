"""Reaching a Tiled server: a URI or a profile, the API key, and errors that say what to do."""

from __future__ import annotations

import logging
import os
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from tiled.client import from_profile, from_uri
from tiled.client.utils import ClientError
from tiled.profiles import ProfileNotFound, load_profiles

from bluesky_digitwin.errors import DigitwinInputError
from bluesky_digitwin.redaction import redact

from .layout import API_KEY_ENV, CATALOG_SPEC, CONTAINER_DESCRIPTIONS, TiledConnectionError

__all__ = ["connection_error", "ensure_catalog", "existing_catalog", "node_uri", "open_node"]

logger = logging.getLogger(__name__)

# -- connecting ----------------------------------------------------------------------------------


#: What Tiled's client accepts as an API key: it silently drops any other key (one with a space
#: or an ``&``, say) and then reports that the server needs a key, which misleads.
_API_KEY_PATTERN = re.compile(r"\w+")


def _refused_key(where: str, why: str = "") -> TiledConnectionError:
    return TiledConnectionError(
        f"the Tiled server at {where} refused the API key{why}; set {API_KEY_ENV} (or the "
        "profile's key) to a valid key for this server"
    )


def connection_error(exc: BaseException, where: str) -> TiledConnectionError:
    """A clear error for a failed request (the key itself is never part of it)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return _refused_key(where)
    if status == 403:
        return TiledConnectionError(
            f"the Tiled server at {where} does not allow this with the API key given "
            f"({redact(str(exc))}); use a key with write access"
        )
    if isinstance(exc, RuntimeError) and "API key" in str(exc):
        return TiledConnectionError(
            f"the Tiled server at {where} needs an API key; set the environment variable "
            f"{API_KEY_ENV} or use a Tiled profile that provides one"
        )
    if isinstance(exc, httpx.TransportError):
        return TiledConnectionError(
            f"cannot reach the Tiled server at {where} ({type(exc).__name__}: "
            f"{redact(str(exc))}); is it running, and is the URI right?"
        )
    return TiledConnectionError(f"Tiled at {where}: {type(exc).__name__}: {redact(str(exc))}")


def _given_api_key(uri: str | None, profile: str | None, api_key: str | None) -> str | None:
    """The key Tiled's client will use: from the argument, URI, profile or variable."""
    if api_key is not None:
        return api_key
    if profile is not None:
        _, content = load_profiles().get(profile, (None, {}))
        if content.get("api_key"):
            return str(content["api_key"])
        uri = content.get("uri")
    if uri is not None:
        in_uri = parse_qs(urlsplit(uri).query).get("api_key")
        if in_uri:
            return in_uri[0]
    return os.environ.get(API_KEY_ENV)


def open_node(uri: str | None, profile: str | None, api_key: str | None) -> Any:
    """A Tiled client of the node at ``uri`` or of ``profile``; errors made clear."""
    where = redact(uri) if uri is not None else f"profile {profile!r}"
    # Without an explicit key, Tiled's client takes one from the URI's query, the profile, or
    # TILED_API_KEY, in that order; so nothing is passed then.
    options = {} if api_key is None else {"api_key": api_key}
    key = _given_api_key(uri, profile, api_key)
    if key and not _API_KEY_PATTERN.fullmatch(key):
        raise _refused_key(
            where, " (a Tiled API key is letters, digits and '_' only; this one has others)"
        )
    try:
        if uri is not None:
            return from_uri(uri, **options)
        return from_profile(profile, **options)
    except ProfileNotFound as exc:
        raise TiledConnectionError(str(exc)) from None
    except (ClientError, httpx.TransportError, RuntimeError) as exc:
        raise connection_error(exc, where) from None


def node_uri(node: Any) -> str:
    """The URI of a client's node, without any API key: ``.../api/v1`` for a server's root."""
    api = str(node.context.api_uri).rstrip("/")
    parts = [part for part in getattr(node, "path_parts", None) or [] if part]
    return f"{api}/metadata/{'/'.join(parts)}" if parts else api


def existing_catalog(node: Any, key: str) -> Any:
    """The child ``key`` of ``node``, checked to be a catalog of bluesky runs (KeyError if none)."""
    child = node[key]
    versions = [s.version or "" for s in child.specs if s.name == CATALOG_SPEC.name]
    if not any(v.startswith("3.") for v in versions):
        raise DigitwinInputError(
            f"{node_uri(child)} exists but is not a {CATALOG_SPEC.name} 3.x container (its "
            f"specs: {', '.join(str(s) for s in child.specs) or 'none'}); the layout needs "
            f"'{key}' to be one: use another node, or move that container away"
        )
    return child


def ensure_catalog(node: Any, key: str) -> Any:
    """The container ``key`` under ``node``, created the first time (with its spec)."""
    try:
        return existing_catalog(node, key)
    except KeyError:
        pass
    try:
        return node.create_container(
            key=key, specs=[CATALOG_SPEC], metadata={"description": CONTAINER_DESCRIPTIONS[key]}
        )
    except ClientError as exc:
        if exc.response.status_code != httpx.codes.CONFLICT:
            raise connection_error(exc, node_uri(node)) from None
    # Someone else created it between our look-up and our creation: use theirs.
    return existing_catalog(node, key)
