"""Importers of the sheets teams keep today (layer 3). See :mod:`hub.importers.customers`."""

from hub.importers.customers import ImportResult, RowResult, import_customers, write_report

__all__ = ["ImportResult", "RowResult", "import_customers", "write_report"]
