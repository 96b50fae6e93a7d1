"""`reco demo`: broker, Redis, one worker and a replay on one machine, with a live dashboard."""

from streams.demo.run import malformed_purchases, run_demo

__all__ = ["malformed_purchases", "run_demo"]
