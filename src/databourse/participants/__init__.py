"""Participants: organisations, their roles and users, and the admission workflow."""
