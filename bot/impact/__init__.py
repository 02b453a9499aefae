"""Impact reports: what a PR changes in the data and in the semantic layer's numbers."""
