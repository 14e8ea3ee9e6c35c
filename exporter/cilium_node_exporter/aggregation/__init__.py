"""Aggregation: counters and state that sources write and the exposition reads."""
