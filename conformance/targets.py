"""Which CPython ``test_asyncio`` modules the conformance run covers: the running
interpreter's own.

``MODULES`` is every ``test_*`` module of the installed ``test.test_asyncio`` package, in
``ORDER`` where listed there and then in name order (so a module a new CPython adds, such as
3.12's ``test_eager_task_factory`` or 3.13's ``test_staggered``, runs without being named
here). A module whose name is in ``excluded.EXCLUDED_MODULES`` is listed in the table but
never started. ``QUICK`` is the subset ``--quick`` runs: the loop core.
"""

import os

PACKAGE = "test.test_asyncio"

# The loop core first, then transports and servers, then asyncio's own loops.
CORE = [
    "test_base_events",
    "test_context",
    "test_futures",
    "test_futures2",
    "test_tasks",
    "test_eager_task_factory",  # 3.12+
    "test_locks",
    "test_queues",
    "test_pep492",
    "test_runners",
    "test_timeouts",
    "test_taskgroups",
    "test_staggered",  # 3.13+
    "test_waitfor",
    "test_threads",
    "test_events",
    "test_sock_lowlevel",
]
ORDER = CORE + [
    "test_streams",
    "test_server",
    "test_buffered_proto",
    "test_sendfile",
    "test_sslproto",
    "test_ssl",
    "test_subprocess",
    "test_unix_events",
    "test_protocols",
    "test_transports",
    "test_selector_events",
    "test_proactor_events",
    "test_windows_events",
    "test_windows_utils",
]


def _installed_modules():
    """The ``test_*`` modules of this interpreter's ``test.test_asyncio`` (no import of
    the package itself, which would start its module-level set-up)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"this interpreter has no {PACKAGE} (CPython's test suite is not installed; "
            "Debian ships it as libpython3.X-testsuite)"
        )
    names = set()
    for directory in spec.submodule_search_locations:
        for entry in os.listdir(directory):
            if entry.startswith("test_") and entry.endswith(".py"):
                names.add(entry[:-3])
    return names


_present = _installed_modules()
MODULES = [m for m in ORDER if m in _present] + sorted(_present - set(ORDER))
QUICK = [m for m in CORE if m in _present]
