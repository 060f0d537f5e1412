"""misbridge benchmarks (issue 7): scripts that print their numbers; ``make bench`` runs them all."""
