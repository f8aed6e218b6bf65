"""Video recognition methods composed from the building blocks (per-frame, DFF, FGFA, ...)."""
