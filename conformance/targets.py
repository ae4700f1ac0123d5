"""Which CPython ``test_asyncio`` modules the conformance run covers.

``MODULES`` lists every module of ``test.test_asyncio`` in the order they are run. A module
whose name is in ``excluded.EXCLUDED_MODULES`` is listed in the table but never started.
``QUICK`` is the subset ``--quick`` runs (the loop core; the later-issue modules are left out).
"""

PACKAGE = "test.test_asyncio"

MODULES = [
    # The loop core: this scope.
    "test_base_events",
    "test_context",
    "test_futures",
    "test_futures2",
    "test_tasks",
    "test_locks",
    "test_queues",
    "test_pep492",
    "test_runners",
    "test_timeouts",
    "test_taskgroups",
    "test_waitfor",
    "test_threads",
    "test_events",
    "test_sock_lowlevel",
    # Transports, TLS, pipes, subprocesses: later issues (mostly expected failures for now).
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
    # asyncio's own event loop implementations: excluded as a whole (see excluded.py).
    "test_selector_events",
    "test_proactor_events",
    "test_windows_events",
    "test_windows_utils",
]

QUICK = MODULES[:MODULES.index("test_streams")]
