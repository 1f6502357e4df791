"""What the ASGI scope says that more than one layer reads."""

from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """The path the app routes: the request's path without the `--root-path` it is served
    under (ASGI puts the root path at the start of `path`); the documented paths, such as
    `/healthz`, are these."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path
