"""The benchmarks of issue 7: every figure a ratio measured side by side in one run (`python -m benchmarks`)."""
