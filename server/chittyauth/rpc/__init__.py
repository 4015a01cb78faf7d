"""The gRPC surface: thin grpc.aio servicers, interceptors and error mapping."""
