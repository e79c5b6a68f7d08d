"""The MCP relay: MCP servers behind NAT dial out to the gateway (`WS /api/mcp/connect`) and
MCP clients reach them through it (`/mcp/{client_id}`).

`relays` holds the registered relays, their sessions and the calls in flight; the HTTP and
WebSocket shells are in `gateway.routes.mcp`.
"""
