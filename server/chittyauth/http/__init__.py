"""The HTTP/JSON shim: google.api.http transcoding, OAuth endpoints and legacy routes.

Transcoded routes become real gRPC calls of the same RPC over a channel to the service's own
gRPC port, so they pass through the same interceptors as any other caller.
"""
