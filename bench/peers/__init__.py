"""agentkube beside controller-runtime and kopf doing the same MCP work: ``python -m bench.peers``."""
