"""memory.md and analysis.md as documents, and the variance table."""
