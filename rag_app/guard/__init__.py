"""The hallucination guard."""
