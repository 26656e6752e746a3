"""A stateful fake HTTP server on 127.0.0.1 that checks requests against a real OpenAPI spec.

Subclasses register routes (``route(method, template, handler)``, templates
as in the spec: ``/throttling/deny-policy/{conditionId}``). Every request to
a spec'd prefix is validated with openapi-core before its handler runs; an
invalid one gets 400 and is kept in ``rejected`` (a test asserts it stays
empty). Faults can be injected to test the client's retries:

- ``status``: answer a status without doing anything;
- ``delay``: do the work, then answer after a delay (the client times out);
- ``drop``: do the work, then close the connection without an answer.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

SPECS = Path(__file__).parent / "specs"
SPEC_HOST = "http://fake"

Handler = Callable[..., Response]


def load_spec(name: str, base_path: str, patch: Callable[[dict], None] | None = None) -> OpenAPI:
    """Load a spec from ``specs/`` with its server set to ``base_path`` (and a documented patch)."""
    import yaml
    from jsonschema_path.loaders import JsonschemaSafeLoader

    with open(SPECS / name, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=JsonschemaSafeLoader)  # noqa: S506 - a safe loader without timestamp parsing
    doc = json.loads(json.dumps(doc))  # YAML int keys (response codes) -> strings
    doc["servers"] = [{"url": SPEC_HOST + base_path}]
    if patch is not None:
        patch(doc)
    return OpenAPI.from_dict(doc)


class _SpecRequest(WerkzeugOpenAPIRequest):
    @property
    def host_url(self) -> str:
        return SPEC_HOST + "/"


@dataclass
class Fault:
    kind: str  # "status" | "delay" | "drop"
    times: int
    status: int = 500
    delay_s: float = 0.0
    path_prefix: str = ""
    method: str = ""  # empty: any
    retry_after: str | None = None


@dataclass
class Logged:
    method: str
    path: str
    status: int  # 0: connection dropped
    body: object = None


@dataclass
class FakeServer:
    """Base of the fakes: routing, spec validation, faults, a request log."""

    specs: dict[str, OpenAPI] = field(default_factory=dict)  # path prefix -> spec
    log: list[Logged] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._server = None
        self._thread: threading.Thread | None = None

    # -- setup -----------------------------------------------------------------

    def route(self, method: str, template: str, handler: Handler) -> None:
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def start(self) -> FakeServer:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def inject(self, kind: str, times: int = 1, **kw) -> Fault:
        """Make the next ``times`` matching requests fail in the given way."""
        fault = Fault(kind, times, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def calls(self, method: str, path_prefix: str = "", status: int | None = None) -> list[Logged]:
        """Logged requests with this method under ``path_prefix`` (and this status)."""
        with self.lock:
            return [
                c for c in self.log
                if c.method == method and c.path.startswith(path_prefix) and (status is None or c.status == status)
            ]  # fmt: skip

    # -- serving -------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and path.startswith(fault.path_prefix) and fault.method in ("", method):
                    fault.times -= 1
                    return fault
        return None

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        fault = self._take_fault(request.method, request.path)
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            response = Response(json.dumps({"code": fault.status, "message": "injected fault"}), fault.status,
                                headers=headers, content_type="application/json")  # fmt: skip
        else:
            response = self._handle(request)
        with self.lock:
            body = request.get_json(silent=True) if request.get_data() else None
            self.log.append(Logged(request.method, request.full_path.rstrip("?"), response.status_code, body))
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay_s)
        if fault is not None and fault.kind == "drop":
            sock: socket.socket = environ["werkzeug.socket"]
            sock.shutdown(socket.SHUT_RDWR)
            with self.lock:
                self.log[-1].status = 0
            start_response("500 Dropped", [])
            return []
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        for prefix, spec in self.specs.items():
            if request.path.startswith(prefix):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # openapi-core does not check oauth2 schemes; the fakes do
                    try:
                        spec.validate_request(_SpecRequest(request))
                    except Exception as exc:  # noqa: BLE001 - every validation error is a rejection
                        detail = f"{request.method} {request.full_path}: {type(exc).__name__}: {exc}"
                        cause = getattr(exc, "__cause__", None)
                        if cause is not None:
                            detail += f" ({cause})"
                        with self.lock:
                            self.rejected.append(detail)
                        return error(400, "request not valid under the OpenAPI spec", detail)
                break
        for method, pattern, handler in self._routes:
            m = pattern.match(request.path)
            if m and method == request.method:
                with self.lock:
                    return handler(request, **m.groupdict())
        return error(404, "no such resource", request.path)


def error(status: int, message: str, description: str = "") -> Response:
    body = {"code": status, "message": message}
    if description:
        body["description"] = description
    return Response(json.dumps(body), status, content_type="application/json")


def ok(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status, headers=headers or {}, content_type="application/json")
