"""Admin for cameras and their segment index."""
