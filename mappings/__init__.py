"""Declarative canonical <-> vendor mappings (layer 2): data in ``specs/*.yaml``, small pure Python.

- :mod:`mappings.spec`: the model of a mapping (field rules + value tables, name + version).
- :mod:`mappings.apply`: :func:`apply_mapping` (pure) -> :class:`MappedRecord` carrying the version.
- :mod:`mappings.coverage`: :func:`check_coverage` refuses a version that leaves a value in use unmapped.
- :mod:`mappings.loader`: reads specs from the package or a project directory.
- :mod:`mappings.registry`: checks that the streams of a template / hub.yaml name mappings that exist,
  fit the stream and cover the values in use.
"""

from mappings.apply import MappedRecord, MappingFailed, UnmappedValue, apply_mapping
from mappings.coverage import CoverageReport, check_coverage, find_gaps
from mappings.loader import LoadedMapping, load_mapping, load_mapping_file
from mappings.spec import CLOSED_DOMAINS, FieldRule, Mapping, ValueTable

__all__ = [
    "CLOSED_DOMAINS",
    "CoverageReport",
    "FieldRule",
    "LoadedMapping",
    "MappedRecord",
    "Mapping",
    "MappingFailed",
    "UnmappedValue",
    "ValueTable",
    "apply_mapping",
    "check_coverage",
    "find_gaps",
    "load_mapping",
    "load_mapping_file",
]
