"""ChittyOS Python packages."""
