"""Measured figures as data: the result files the docs render their benchmark figures from (benchmarks/*.json),
and the tool that re-measures and renders them (`python -m benchmarks`)."""
