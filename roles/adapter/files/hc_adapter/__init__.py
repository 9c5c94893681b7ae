"""HingeCraft data adapter (roles/adapter)."""
