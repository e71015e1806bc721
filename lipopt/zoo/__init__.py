"""Network architectures used by the importers, benchmarks and examples (no downloads)."""
