"""Judging samples: FID, KID, precision/recall on Inception features, and the Bayes view on 2-D toy data."""
