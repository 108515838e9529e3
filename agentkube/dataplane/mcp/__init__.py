"""The MCP proxy: the program an MCP's Deployment runs (``agentkube mcp-proxy``), and its config file."""
