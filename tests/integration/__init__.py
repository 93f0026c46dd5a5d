"""Integration tests: real swtpm, redis-server, database and HTTP."""
