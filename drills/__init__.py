"""`imgops drill <alarm>`: every alarm fired on a time-compressed local stack, and its runbook walked back to OK.

`names` is light (the CLI reads it at start-up); `framework` and `catalogue` bring the local stack with them.
"""
