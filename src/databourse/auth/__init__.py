"""Authentication (passwords, sessions, bearer tokens, API keys) and the authorization policy."""
