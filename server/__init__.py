"""The Starlette application, authentication, file downloads and the ``stepwise`` CLI."""
