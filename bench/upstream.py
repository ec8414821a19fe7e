"""The app behind nginx in the nginx benchmarks: a trivial Starlette app where any path answers
200 with a short text naming the Remote-User nginx passed on (so that the benchmark can check
that the auth path was taken). Trivial on purpose: the ratio then shows the cost of the 2FA
check against the cheapest possible app request, the worst case for the ratio."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello {request.headers.get('remote-user', '')}\n")


app = Starlette(routes=[Route("/{path:path}", hello)])
