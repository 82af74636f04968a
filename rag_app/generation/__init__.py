"""Generators: one protocol, several backends (transformers, OpenAI-compatible servers, llama.cpp)."""
