"""docs/usage.md: uvicorn started from Python, on ferroloop.  python serve_uvicorn.py [PORT]"""

import sys

import uvicorn

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    uvicorn.run("asgi_app:app", host="127.0.0.1", port=port, loop="ferroloop:new_event_loop")
