"""Pieces shared by the gateway, the workers and the client: below them all, above schema."""
