"""agentkube."""
