"""Command line: ``assistant serve|chat|replay|index`` (``main``), the HTTP client and replay."""
