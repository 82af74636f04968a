"""Adapters to and from LlamaIndex and LangChain (each imports its framework lazily)."""
