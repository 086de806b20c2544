"""Speed figures of the project (`make bench`: python -m benchmarks.bench, from the repository
root). Tooling, not part of the installed package `dlbasics`: nothing in it is imported by a
stage."""
