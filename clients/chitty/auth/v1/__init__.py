"""Generated stubs for chitty.auth.v1 (do not edit; run `make gen`)."""
