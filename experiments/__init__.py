"""Online experiments: the statistics that judge an A/B test, off-policy estimates of a
policy's value from logged propensities, and interleaving of two rankers in one feed."""
