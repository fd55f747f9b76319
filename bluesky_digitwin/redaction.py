"""Credentials out of everything a user sees or a twin saves: one redaction for the package.

A storage or server address may carry a secret: the password of a database URL
(``postgresql://user:secret@host/db``), or a query value (``?password=...``, ``?api_key=...``,
``sslpassword=``, ``access_token=``...). Drivers quote such addresses in their error
messages. Every message, banner, log line and saved file that may hold an address goes through
:func:`redact`, which masks the secret and keeps the rest (scheme, user, host, database) so the
message still says where.

>>> redact("cannot open postgresql://me:pw@db:5432/x?sslmode=require&password=pw2")
'cannot open postgresql://me:***@db:5432/x?sslmode=require&password=***'
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MASK", "redact", "redact_url"]

#: What a secret is replaced with.
MASK = "***"

# The password of a URL's userinfo (scheme://user:password@host). It runs to the last "@" of
# the address (which ends at a space, line break or quote): a password with an unescaped "@" or
# "/" is still hidden whole, where SQLAlchemy's parser would stop at the first "@" and show the
# rest as the host. sqlalchemy.engine.make_url(...).render_as_string(hide_password=True) is not
# used for that reason, and because messages quote URLs within prose.
_USERINFO = re.compile(
    r"""(?P<head>\b[a-z][a-z0-9+.\-]*://[^ \t\r\n:/@?#'"]*:)(?P<secret>[^ \t\r\n'"]*)(?=@)""",
    re.IGNORECASE,
)

# A secret "key=value" anywhere: a URL's query, a libpq connection string ("host=x
# password=y"), a Tiled URI's api_key. A key counts as secret when its name holds one of these.
_SECRET_NAMES = (
    "pass",  # password, passwd, sslpassword, passphrase
    "pwd",
    "secret",  # secret, client_secret, aws_secret_access_key
    "token",  # token, access_token, sas_token
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "accesskey",
    "private_key",
    "credential",
    "signature",
    "auth",  # auth, authorization, x-auth
)  # and "sig" (a signed URL's signature) as a whole key
# The value runs to the next "&", space or quote: a secret is masked whole, even when that
# masks a bracket or comma after it too.
_KEY_VALUE = re.compile(
    r"""(?P<head>(?<![\w\-.])(?:[\w\-.]*(?:"""
    + "|".join(re.escape(n) for n in _SECRET_NAMES)
    + r""")[\w\-.]*|sig)\s*=\s*)(?P<secret>'[^']*'|"[^"]*"|[^ \t\r\n&'"]+)""",
    re.IGNORECASE,
)


def redact(text: str, *, url: str | None = None) -> str:
    """``text`` with every credential in it masked: URL passwords and secret ``key=value`` pairs.

    Parameters
    ----------
    text
        Anything: a URL, an error message quoting one, a libpq connection string.
    url
        The address ``text`` is about, if known (e.g. the storage URL a driver's error message
        is about): each secret it carries is also masked wherever it appears in ``text``, as
        written or percent-decoded, since a driver may quote a password alone.

    Returns
    -------
    str
        The same text with each secret replaced by :data:`MASK`; everything else unchanged.
    """
    if url is not None:
        for secret in _secrets_in(url):
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: m["head"] + MASK, text)
    return _KEY_VALUE.sub(lambda m: m["head"] + _masked(m["secret"]), text)


def redact_url(url: str) -> str:
    """A storage or server address as it may be shown and saved: :func:`redact` of it."""
    return redact(url)


def _secrets_in(url: str) -> list[str]:
    """The secrets ``url`` carries, as written and percent-decoded, longest first.

    Secrets shorter than three characters are left out: masking every "a" in a message would
    make it unreadable, and such a password protects nothing anyway.
    """
    found = [m["secret"] for m in _USERINFO.finditer(url)]
    found += [m["secret"].strip("'\"") for m in _KEY_VALUE.finditer(url)]
    both = {variant for secret in found for variant in (secret, unquote(secret))}
    return sorted((s for s in both if len(s) >= 3), key=len, reverse=True)


def _masked(secret: str) -> str:
    # Keep the quotes of a quoted value, so the message still reads as it was written.
    if len(secret) >= 2 and secret[0] == secret[-1] and secret[0] in "'\"":
        return secret[0] + MASK + secret[0]
    return MASK
