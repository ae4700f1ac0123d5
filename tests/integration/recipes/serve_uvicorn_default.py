"""docs/usage.md: a script that starts uvicorn with its default loop ("auto").

    python -m ferroloop run serve_uvicorn_default.py [PORT [WORKERS]]
"""

import sys

import uvicorn

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run("asgi_app:app", host="127.0.0.1", port=port, workers=workers)
