"""llmops: an LLMOps application toolkit."""
__version__ = "0.1.0"
