"""Fuzz of the participant JSON API: random bodies never give a 5xx, and a refused request stores nothing."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_server_tampering import _stored

ENDPOINTS = ["/api/consent", "/api/device", "/api/device/give-up", "/api/instructions",
             "/api/answer", "/api/complete"]
FIELDS = ["agree", "window_width", "window_height", "is_phone", "answer_id", "position",
          "chosen_side", "confidence", "rt_ms", "device_pixel_ratio", "blur_count",
          "fullscreen_exit_count", "comment"]
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=50)
           | st.sampled_from(["left", "right", "", "\u202e\x00"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), values, max_size=12) | values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_random_bodies_never_fail_the_server(app, walker, endpoint: str, body) -> None:  # noqa: ANN001
    mallory = walker("fuzz" + "0" * 20)
    mallory.start()
    before = _stored(app)
    response = mallory.post(endpoint, body)
    assert response.status_code < 500, (endpoint, body, response.get_data(as_text=True))
    if response.status_code >= 400:
        assert _stored(app) == before
