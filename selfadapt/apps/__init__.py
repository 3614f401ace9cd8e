"""Applications built on the library: each a small package or module with its own command."""
