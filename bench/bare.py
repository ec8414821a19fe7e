"""The baseline: a bare Starlette endpoint answering 200, served with the same settings."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def ok(request: Request) -> Response:
    return Response(b"", status_code=200)


app = Starlette(routes=[Route("/auth/nginx", ok)])
