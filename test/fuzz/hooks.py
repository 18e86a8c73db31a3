"""Schemathesis hooks for the API fuzz test (test/integration/api.fuzz.test.ts), loaded with
SCHEMATHESIS_HOOKS=test/fuzz/hooks.py.

`error_names_field`: every 4xx answer carries the API's JSON error body (api/common/errors.ts), whose `field`
names what to fix and whose `message` says why. The OpenAPI document and Swagger UI are not the API's own
routes and are left out.
"""

import json
from urllib.parse import urlsplit

import schemathesis

NOT_API = ("/openapi.json", "/openapi.yaml", "/docs")


@schemathesis.check
def error_names_field(ctx, response, case):
    """A 4xx response is a JSON object with a non-empty string `field` and a string `message`."""
    if not 400 <= response.status_code < 500:
        return None
    path = urlsplit(response.request.url).path
    if any(path == p or path.startswith(p + "/") for p in NOT_API):
        return None
    content_type = ";".join(response.headers.get("content-type", []))
    if "json" not in content_type.lower():
        raise AssertionError(f"{response.status_code} without a JSON error body (Content-Type: {content_type or 'none'})")
    try:
        body = json.loads(response.content)
    except ValueError as err:
        raise AssertionError(f"{response.status_code} body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise AssertionError(f"{response.status_code} body is not a JSON object: {body!r}")
    field = body.get("field")
    if not isinstance(field, str) or not field:
        raise AssertionError(f"{response.status_code} error does not name a field (`field` is {field!r}): {body!r}")
    if not isinstance(body.get("message"), str):
        raise AssertionError(f"{response.status_code} error has no string `message`: {body!r}")
    return None
