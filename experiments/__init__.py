"""Online experiments: the statistics that judge an A/B test (and, later, its runs)."""
