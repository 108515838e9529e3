"""The LLM gateway: the program an LLMGateway's Deployment runs (``agentkube llm-gateway``)."""
