"""docs/usage.md: a gunicorn config that puts aiohttp's own worker on ferroloop.

    gunicorn aiohttp_app:make_app -c gunicorn_conf.py -k aiohttp.GunicornWebWorker
"""


def post_fork(server, worker):
    import ferroloop

    ferroloop.install()
