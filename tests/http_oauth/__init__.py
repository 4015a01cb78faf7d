"""The browser-facing OAuth endpoints, client registration, CIMD and the MCP SDK."""
