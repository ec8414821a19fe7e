"""A demo web app with its own password login, and a dev proxy that mimics nginx auth_request."""
