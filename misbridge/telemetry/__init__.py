"""What misbridge tells people: log lines (card data masked) and Prometheus metrics."""
