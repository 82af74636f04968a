"""Evaluation: retrieval and answer metrics, hallucination reports, probes, retraining selection."""
