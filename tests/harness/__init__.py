"""Real services for tests and for `make demo`, started on 127.0.0.1 with free ports and torn down after.

Each service is a small class with start(), stop() and the few facts a client needs (port, URL, DSN).
pytest fixtures in tests/conftest.py wrap them; scripts/demo.py reuses them for the embedded default.
"""
