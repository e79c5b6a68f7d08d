"""The gateway's HTTP and WebSocket routes, one module per area, each installed on the app
by a small `add_*_routes` function that `gateway.app.create_app` calls:

- `openai`: `/v1/models`, `/v1/chat/completions`, `/v1/embeddings`
- `admin`: health, `/api/state` (+ stream), whoami, plugins, actions, `/metrics`
- `workers`: `WS /api/workers/connect` (worker dial-in)
- `backends`: `/api/backends…`
- `mcp`: `WS /api/mcp/connect` (relay dial-in) and `/mcp/{client_id}`

`common` holds what several areas share (errors, auth guards, SSE response, client-disconnect
handling); `dial_in` the connection loop that workers and MCP relays share.
"""
