"""Personalised product search: retrieval indexes, search sessions, the learning-to-rank model and its evaluation."""
