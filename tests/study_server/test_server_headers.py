"""Security headers on every response; no inline script or style that the policy would block."""
from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "study_server" / "templates"


def test_templates_have_no_inline_script_or_style() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        for script in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in script, f"{template.name}: inline <script>"
        assert "<style" not in text, template.name
        assert not re.search(r"\son[a-z]+\s*=", text), f"{template.name}: inline event handler"
        assert "style=" not in text, template.name
        assert "javascript:" not in text, template.name


def test_every_response_carries_the_security_headers(app) -> None:  # noqa: ANN001
    client = app.test_client()
    for path in ("/preview", "/start", "/start?PROLIFIC_PID=" + "a" * 24, "/api/trial",
                 "/static/study.js", "/admin/login", "/admin", "/no-such-page", "/img/forged"):
        response = client.get(path)
        csp = response.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Referrer-Policy"] == "same-origin", path
