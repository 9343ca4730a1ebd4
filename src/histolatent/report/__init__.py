"""HTML reports."""

from histolatent.report.html import Section, write_report

__all__ = ["Section", "write_report"]
