"""A study file's validation errors as sentences a researcher can act on.

pydantic says ``Input should be a valid integer`` at ``('ui', 'min_photos')``; a researcher needs the file, the
section and key as the file spells them, what is allowed there (a type, a range, the choices) and the fix
(``did you mean results_dir?``, an example value). ``study_file_error`` writes that, one line per mistake, from
the models of ``dressup.study_schema`` (their descriptions, defaults and examples), so a new key documents its
own errors.
"""
from __future__ import annotations

import difflib
import json
import re
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from dressup.study_schema import StudyFile
from dressup.study_types import StudyFileError

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_KINDS = {"int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
          "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
          "bool_parsing": "true or false", "string_type": "a string in double quotes", "list_type": "a list",
          "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table"}
_RANGES = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def study_file_error(error: ValidationError, path: Path) -> StudyFileError:
    """One ``StudyFileError`` naming every mistake pydantic found in the study file at ``path``."""
    lines = [describe(e) for e in error.errors(include_url=False)]
    if len(lines) == 1:
        return StudyFileError(f"{path}: {lines[0]}")
    return StudyFileError(f"study file {path} has {len(lines)} mistakes:\n" + "\n".join(f"  {x}" for x in lines))


def describe(error: dict[str, Any]) -> str:
    """One pydantic error as ``[section] key = value <what is wrong>; <the fix>``."""
    loc = tuple(str(p) for p in error["loc"])
    kind = error["type"]
    if loc and loc[-1] == "[key]":  # a key of a table whose keys are fixed (subset's partitions)
        return _bad_table_key(loc[:-2], loc[-2], error)
    parts, key = loc[:-1], (loc[-1] if loc else "")
    where = _section(parts)
    info = _field_at(loc)
    if kind == "extra_forbidden":
        return _unknown(parts, key)
    if kind in ("missing", "too_short"):
        return _missing(parts, key, info)
    if not parts and kind in ("model_type", "dict_type"):
        return f"[{key}] must be a table: write [{key}] on a line of its own with its keys below it"
    shown = f"{where} {_toml_key(key)} = {_toml(error.get('input'))}"
    if kind == "literal_error":
        return f"{shown} {_choices(key, error)}"
    if kind in _KINDS:
        scalar = kind.split("_")[0] in ("int", "float", "bool")
        quoted = " (without quotes)" if scalar and isinstance(error.get("input"), str) else ""
        return f"{shown} must be {_KINDS[kind]}{quoted}{_example(key, info)}"
    if kind in _RANGES:
        about = f" ({info.description})" if info is not None and info.description else ""
        return f"{shown} is out of range: must be {_range(info, error)}{about}{_example(key, info)}"
    return f"{shown}: {error['msg']}"


def _unknown(parts: tuple[str, ...], key: str) -> str:
    model = _model_at(parts)
    allowed = list(model.model_fields) if model is not None else []
    guess = difflib.get_close_matches(key, allowed, n=1)
    if not parts:
        mean = f"; did you mean [{guess[0]}]?" if guess else ""
        return (f"unknown section [{key}]{mean} A study file has the sections "
                f"{', '.join(f'[{s}]' for s in allowed)}; rename or remove [{key}]")
    mean = f"; did you mean {guess[0]}?" if guess else ""
    return (f"{_section(parts)} has unknown key {key!r}{mean} Allowed keys: {sorted(allowed)}; rename or remove "
            f"{key}")


def _missing(parts: tuple[str, ...], key: str, info: FieldInfo | None) -> str:
    if not parts and key == "arms":
        return ('defines no [arms.*]; add at least one arm, e.g. [arms.baseline] with kind = "retrieval" and '
                'encoder = "NAME"')
    annotation = _plain(info.annotation) if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        required = [n for n, f in annotation.model_fields.items() if f.is_required()]
        keys = f" with {', '.join(required)}" if required else ""
        return f"needs a {_section(parts + (key,))} section{keys} (see assets/demo.toml)"
    about = f", {info.description}" if info is not None and info.description else ""
    return f"{_section(parts)} needs '{key}'{about}{_example(key, info, 'add')}"


def _bad_table_key(parts: tuple[str, ...], key: str, error: dict[str, Any]) -> str:
    choices = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
    guess = difflib.get_close_matches(key, choices, n=1)
    mean = f"; did you mean {guess[0]}?" if guess else ""
    return f"{_section(parts)} has key {key!r}, which is not one of {', '.join(choices)}{mean}"


def _choices(key: str, error: dict[str, Any]) -> str:
    choices = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
    quoted = [json.dumps(c) for c in choices]
    allowed = " or ".join(quoted) if len(quoted) <= 2 else f"one of {', '.join(quoted[:-1])} or {quoted[-1]}"
    value = error.get("input")
    guess = difflib.get_close_matches(value, choices, n=1, cutoff=0.5) if isinstance(value, str) else []
    fix = f"did you mean {json.dumps(guess[0])}? write {_toml_key(key)} = {json.dumps(guess[0])}" if guess else \
        f"write e.g. {_toml_key(key)} = {quoted[0] if quoted else '...'}"
    return f"must be {allowed}; {fix}"


def _range(info: FieldInfo | None, error: dict[str, Any]) -> str:
    bounds: dict[str, Any] = {}
    for m in (info.metadata if info is not None else []):
        for name in ("ge", "gt", "le", "lt"):
            if getattr(m, name, None) is not None:
                bounds[name] = getattr(m, name)
    if not bounds:
        bounds = dict(error.get("ctx") or {})
    if bounds.get("ge") == 0 and bounds.get("le") == 1:
        return "a share in [0, 1]"
    low = f">= {bounds['ge']}" if "ge" in bounds else (f"> {bounds['gt']}" if "gt" in bounds else "")
    high = f"<= {bounds['le']}" if "le" in bounds else (f"< {bounds['lt']}" if "lt" in bounds else "")
    return " and ".join(x for x in (low, high) if x)


def _example(key: str, info: FieldInfo | None, verb: str = "e.g.") -> str:
    if info is None:
        return ""
    value = info.default if not info.is_required() else None
    if value in (None, "", {}, []) and info.examples:
        value = info.examples[0]
    if value in (None, "", {}, []):
        return ""
    return f"; {verb} {_toml_key(key)} = {_toml(value)}"


def _field_at(loc: tuple[str, ...]) -> FieldInfo | None:
    """The model field ``loc`` ends on (None when it ends inside a table of free keys)."""
    annotation: Any = StudyFile
    info = None
    for part in loc:
        annotation = _plain(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            if info is None:
                return None
            annotation = info.annotation
        elif get_origin(annotation) is dict:
            annotation, info = get_args(annotation)[1], None
        else:
            return None
    return info


def _model_at(parts: tuple[str, ...]) -> type[BaseModel] | None:
    annotation: Any = StudyFile
    for part in parts:
        annotation = _plain(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            annotation = info.annotation if info is not None else None
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _plain(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _plain(annotation: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if _plain(a) is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _section(parts: tuple[str, ...]) -> str:
    return "[" + ".".join(_toml_key(p) for p in parts) + "]" if parts else "the top level"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
