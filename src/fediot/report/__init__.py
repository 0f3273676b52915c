"""Tables, plots and Markdown reports built from experiment results."""

from fediot.report.io import atomic_write, to_jsonable, write_json, write_text

__all__ = ["atomic_write", "to_jsonable", "write_json", "write_text"]
