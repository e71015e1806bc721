"""Exact reference methods for tiny networks (linear-region enumeration)."""
