"""The HTTP edge: app factory, middleware, problem responses and shared dependencies."""
