"""The rules of ChittyAuth; nothing here imports grpc or aiohttp."""
