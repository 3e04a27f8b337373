"""The security headers of every reply: Flask's after_request adds them (app.py), and the replies
answered before Flask carry them too (opaque_images.py).

Every script and style is a served file (the templates have none inline), so the policy allows only
this origin; no page may be framed (clickjacking of the answer buttons).
"""
from __future__ import annotations

SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                   "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                   "frame-ancestors 'none'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)
