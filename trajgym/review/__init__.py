"""Human review: a local web page where people accept, reject, flag or fix episodes, fast, and the
labels (SQLite beside the data) become training data (``trajgym export --labels``)."""
