"""Templates and the project config (layer 0): strict pydantic models, safe line-aware YAML loading.

Public API::

    load_template(path_or_name) -> LoadedTemplate      # a template file or a shipped preset
    load_project(path=None, check_env=True) -> Project  # hub.yaml ($HUB_CONFIG, default ./hub.yaml)
    template_paths() / find_template(name)             # the presets
    project_schema() / template_schema() / write_schema(path)
    kis_settings(name, template)                        # -> connectors.kingdee.kis.settings.KisSettings

Every problem is a :class:`hub.errors.ConfigError` naming file, line and field; nothing runs.
Mapping references are checked by :mod:`mappings.registry` (a higher layer).
"""

from hub.config.kis import kis_settings
from hub.config.models import KINDS, AnyTemplate, ProjectConfig, TemplateSpec
from hub.config.project import DEFAULT_CONFIG, SCHEMA_FILE, Project, config_path, deep_merge, load_project
from hub.config.schema import project_schema, template_schema, write_schema
from hub.config.templates import LoadedTemplate, find_template, load_template, shipped_dir, template_paths
from hub.config.yaml_source import Position, YamlDocument, load_yaml, parse_yaml

__all__ = [
    "DEFAULT_CONFIG",
    "KINDS",
    "SCHEMA_FILE",
    "AnyTemplate",
    "LoadedTemplate",
    "Position",
    "Project",
    "ProjectConfig",
    "TemplateSpec",
    "YamlDocument",
    "config_path",
    "deep_merge",
    "find_template",
    "kis_settings",
    "load_project",
    "load_template",
    "load_yaml",
    "parse_yaml",
    "project_schema",
    "shipped_dir",
    "template_paths",
    "template_schema",
    "write_schema",
]
