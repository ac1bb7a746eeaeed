"""Cross-engine column types and defaults: MySQL/MariaDB → PostgreSQL and PostgreSQL → MySQL/MariaDB.

Pure functions (no I/O), one place for every choice; the table of choices is in the docstring of
`replicator.schema`. Each choice agrees with what the apply stage writes into such a column: the
decoders turn a Debezium value into a Python value (replicator.apply.logical) and the target writer
binds it per target column type (`postgres_target.converter_for`, `mysql_target.converter_for`).
A type without a safe mapping gives a `Mapping` with `problem` set: the planner reports it and
nothing is created (never a silent downgrade). Target types are spelled as the target's catalog
spells them (PostgreSQL `format_type`, MySQL COLUMN_TYPE without integer display widths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from replicator.dialects.mysql import quote_literal
from replicator.table_schema import ColumnDef, DefaultKind, DefaultValue

# InnoDB index entries are at most 3072 bytes; utf8mb4 takes up to 4 bytes a character.
MYSQL_KEY_BYTES = 3072
MYSQL_MAX_VARCHAR = 16383  # utf8mb4 characters in a row's 65535 bytes
_TYPE = re.compile(r"^([a-z ]+?)\s*(?:\((.*)\))?((?:\s+(?:unsigned|signed|zerofill))*)$")


@dataclass(frozen=True)
class Mapping:
    """The target type of one column, or why there is none (`problem`, with a `suggestion`)."""

    target_type: str = ""
    problem: str | None = None
    suggestion: str = ""
    warning: str | None = None  # a non-blocking remark (precision, collation, time zone)
    text: bool = False  # MySQL target: a character column (gets the utf8mb4_bin collation)


@dataclass(frozen=True)
class MySQLType:
    base: str  # 'int', 'varchar', 'enum'
    args: tuple[str, ...]  # the parenthesised arguments as text: ('12', '3'); enum labels are in ColumnDef.labels
    unsigned: bool


def parse_mysql_type(text: str) -> MySQLType:
    """'decimal(12,3) unsigned zerofill' → ('decimal', ('12', '3'), True). ENUM/SET arguments are kept raw."""
    match = _TYPE.match(text.strip().lower())
    if match is None:
        return MySQLType(text.strip().lower(), (), False)
    base, args, flags = match.group(1), match.group(2), match.group(3)
    parts: tuple[str, ...] = ()
    if args is not None:
        parts = (args,) if base in ("enum", "set") else tuple(a.strip() for a in args.split(","))
    return MySQLType(base.strip(), parts, "unsigned" in flags)


def _fsp(args: tuple[str, ...]) -> int:
    return int(args[0]) if args and args[0].isdigit() else 0


_MYSQL_SPATIAL = frozenset({"geometry", "linestring", "polygon", "multipoint", "multilinestring",
                            "multipolygon", "geometrycollection", "geomcollection"})
_SIGNED_TO_PG = {"tinyint": "smallint", "smallint": "smallint", "mediumint": "integer", "int": "integer",
                 "integer": "integer", "bigint": "bigint"}
_UNSIGNED_TO_PG = {"tinyint": "smallint", "smallint": "integer", "mediumint": "integer", "int": "bigint",
                   "integer": "bigint", "bigint": "numeric(20,0)"}


_MYSQL_SIMPLE = {
    "float": "real", "double": "double precision", "double precision": "double precision",
    "real": "double precision", "date": "date", "year": "smallint", "json": "jsonb",
    # a duration: -838:59:59 … 838:59:59, which a PostgreSQL time cannot hold
    "time": "interval",
    # ENUM gets a CHECK of its labels; SET is the comma-separated text Debezium sends
    "enum": "text", "set": "text", "point": "point",
    "uuid": "uuid", "inet4": "inet", "inet6": "inet",  # MariaDB 10.7+ / 10.5+ / 10.10+
    **dict.fromkeys(("tinytext", "text", "mediumtext", "longtext"), "text"),
    **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"), "bytea"),
}


def postgres_from_mysql(column: ColumnDef) -> Mapping:
    """The PostgreSQL type for a MySQL/MariaDB column (see the table in replicator.schema)."""
    kind = parse_mysql_type(column.source_type)
    base, args = kind.base, kind.args
    if column.json:
        return Mapping("jsonb")
    if base in _SIGNED_TO_PG:
        if base == "tinyint" and args == ("1",) and not kind.unsigned:
            return Mapping("boolean")  # MySQL's BOOLEAN; the writer stores value <> 0
        return Mapping((_UNSIGNED_TO_PG if kind.unsigned else _SIGNED_TO_PG)[base])
    if base in _MYSQL_SIMPLE:
        return Mapping(_MYSQL_SIMPLE[base])
    if base in ("decimal", "numeric", "dec", "fixed"):
        precision, scale = (*args, "0")[:2] if args else ("10", "0")
        return Mapping(f"numeric({int(precision)},{int(scale)})")
    if base == "bit":
        bits = int(args[0]) if args else 1
        return Mapping("boolean" if bits == 1 else f"bit({bits})")  # Debezium sends BIT(1) as a boolean
    if base in ("char", "varchar") and (not args or int(args[0]) > 0):
        spelled = "character" if base == "char" else "character varying"
        return Mapping(f"{spelled}({int(args[0]) if args else 1})")
    if base in ("datetime", "timestamp"):
        zone = "with" if base == "timestamp" else "without"
        return Mapping(f"timestamp({_fsp(args)}) {zone} time zone")
    if base in _MYSQL_SPATIAL:
        return Mapping(problem=f"spatial type {base} needs PostGIS on the target",
                       suggestion="install PostGIS on the target and map the column to geometry with "
                                  "snapshot.column_types, or exclude the table")
    return Mapping(problem=f"type {column.source_type} has no PostgreSQL mapping",
                   suggestion="map the column with snapshot.column_types, or exclude the table")


def case_insensitive_warning(column: ColumnDef) -> str | None:
    """For a key column: PostgreSQL compares text case-sensitively, MySQL's *_ci collations do not."""
    if column.collation and (column.collation.endswith("_ci") or "_ci_" in column.collation):
        return (f"collation {column.collation} compares case-insensitively; PostgreSQL compares "
                "case-sensitively (values differing only in case are distinct there)")
    return None


# -- PostgreSQL → MySQL ----------------------------------------------------------------------------
_PG_TYPMOD = re.compile(r"^([a-z ]+?)(?:\((\d+)(?:,(\d+))?\))?( with(?:out)? time zone)?$")
_PG_SIMPLE = {
    "smallint": "smallint", "integer": "int", "bigint": "bigint", "oid": "bigint", "money": "decimal(19,2)",
    "real": "float", "double precision": "double", "boolean": "tinyint(1)", "uuid": "char(36)", "json": "json",
    "jsonb": "json", "hstore": "json", "date": "date", "xml": "longtext", "inet": "varchar(43)",
    "cidr": "varchar(43)", "macaddr": "varchar(17)", "macaddr8": "varchar(23)", "point": "point",
    "geometry": "geometry", "geography": "geometry",
}
_PG_TEXT_RESULT = frozenset({"char(36)", "longtext", "varchar(43)", "varchar(17)", "varchar(23)"})
_NO_MYSQL = {
    "interval": ("varchar(64)", "an interval (exact as ISO 8601 text in varchar(64))"),
    "bit varying": ("varchar(N)", "a varying bit string (as '0'/'1' text in varchar(N))"),
    "tsvector": ("", "tsvector (Debezium does not capture its changes either)"),
}


def mysql_from_postgres(column: ColumnDef, key_length: int | None = None) -> Mapping:
    """The MySQL type for a PostgreSQL column. `key_length`: the column is part of a primary, unique
    or foreign key and may take at most that many characters (bytes / 4 for binary) in the index."""
    source = column.base_type or column.source_type
    if column.array or source.endswith("[]"):
        return _no_mapping("an array", "json")
    if column.user_type is not None and column.labels:
        return Mapping(f"enum({','.join(map(quote_literal, column.labels))})", text=True)
    match = _PG_TYPMOD.match(source)
    base = match.group(1) if match else source
    length = int(match.group(2)) if match and match.group(2) else None
    scale = int(match.group(3)) if match and match.group(3) else None
    if base in _PG_SIMPLE:
        return Mapping(_PG_SIMPLE[base], text=_PG_SIMPLE[base] in _PG_TEXT_RESULT)
    if base == "numeric":
        return _mysql_decimal(length, scale)
    if base in ("text", "character varying", "character", "bytea"):
        return _mysql_string(base, length, key_length)
    if base == "time":  # PostgreSQL's default precision is 6
        zoned = match is not None and match.group(4) == " with time zone"
        return Mapping(f"time({6 if length is None else length})",
                       warning="timetz is stored as its UTC time of day (the offset is not kept)" if zoned else None)
    if base == "timestamp":  # timestamptz: the instant as UTC wall clock (TIMESTAMP would end in 2038)
        return Mapping(f"datetime({6 if length is None else length})")
    if base == "bit":
        if (length or 1) > 64:
            return _no_mapping(f"bit({length}) (MySQL BIT holds at most 64)", f"varchar({length})")
        return Mapping(f"bit({length or 1})")
    if base in _NO_MYSQL:
        suggested, what = _NO_MYSQL[base]
        return _no_mapping(what, suggested)
    return _no_mapping(f"type {column.source_type}", "json or longtext")


def _mysql_decimal(precision: int | None, scale: int | None) -> Mapping:
    if precision is None:
        return Mapping("decimal(65,30)", warning="numeric without precision becomes decimal(65,30): more "
                       "than 35 integer digits are refused and fractions beyond 30 digits are rounded")
    if precision > 65 or (scale or 0) > 30:
        return _no_mapping(f"numeric({precision},{scale or 0}) (MySQL: at most 65 digits, 30 after the point)",
                           "decimal(65,30)")
    return Mapping(f"decimal({precision},{scale or 0})")


def _mysql_string(base: str, length: int | None, key_length: int | None) -> Mapping:
    if base == "bytea":
        if key_length is None:
            return Mapping("longblob")
        return Mapping(f"varbinary({key_length * 4})", warning=f"bytea in a key becomes varbinary({key_length * 4}) "
                       f"(an InnoDB key holds {MYSQL_KEY_BYTES} bytes): longer values are refused")
    if base == "character":
        size = length or 1
        if size <= 255 and (key_length is None or size <= key_length):
            return Mapping(f"char({size})", text=True)
        return _mysql_text(size, key_length)
    return _mysql_text(length, key_length)


def _mysql_text(length: int | None, key_length: int | None) -> Mapping:
    if key_length is not None and (length is None or length > key_length):
        return Mapping(f"varchar({key_length})", text=True,
                       warning=f"text in a key becomes varchar({key_length}) (an InnoDB key holds "
                               f"{MYSQL_KEY_BYTES} bytes): longer values are refused")
    if length is not None and length <= MYSQL_MAX_VARCHAR:
        return Mapping(f"varchar({length})", text=True)
    return Mapping("longtext", text=True)


def _no_mapping(what: str, suggested: str) -> Mapping:
    hint = (f"map it explicitly with snapshot.column_types (e.g. {suggested}), or exclude the table"
            if suggested else "exclude the table")
    return Mapping(problem=f"{what} has no safe MySQL mapping", suggestion=hint)


def key_lengths(key_columns: tuple[str, ...], types: dict[str, str]) -> dict[str, int]:
    """Characters each unbounded text/bytea column of one PostgreSQL key may take in a MySQL index:
    the 3072 bytes of an InnoDB key, less 16 per other column, shared out and divided by 4 (utf8mb4)."""
    wide = [c for c in key_columns if _is_wide(types.get(c, ""))]
    if not wide:
        return {}
    budget = MYSQL_KEY_BYTES - 16 * (len(key_columns) - len(wide))
    share = max(1, budget // len(wide) // 4)
    return dict.fromkeys(wide, share)


def _is_wide(pg_type: str) -> bool:
    match = _PG_TYPMOD.match(pg_type)
    base = match.group(1) if match else pg_type
    length = int(match.group(2)) if match and match.group(2) else None
    if base in ("text", "bytea"):
        return True
    return base in ("character varying", "character") and (length is None or length > 255)


# -- defaults --------------------------------------------------------------------------------------
_PG_LITERAL = re.compile(r"^'((?:[^']|'')*)'(?:::[\w\s.\"\[\]()]+)?$", re.DOTALL)
_PG_NUMBER = re.compile(r"^\(?(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\)?(?:::[\w\s]+)?$")
_PG_NOW = frozenset({"now()", "current_timestamp", "transaction_timestamp()", "statement_timestamp()",
                     "localtimestamp", "clock_timestamp()"})


def parse_postgres_default(text: str | None) -> DefaultValue | None:
    """A PostgreSQL default expression (pg_get_expr) in neutral form; None for no default or NULL."""
    if text is None:
        return None
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered == "null" or lowered.startswith("null::"):
        return None
    literal = _PG_LITERAL.match(stripped)
    if literal:
        return DefaultValue(DefaultKind.LITERAL, literal.group(1).replace("''", "'"))
    number = _PG_NUMBER.match(stripped)
    if number:
        return DefaultValue(DefaultKind.NUMBER, number.group(1))
    if lowered in ("true", "false"):
        return DefaultValue(DefaultKind.BOOLEAN, lowered)
    if re.sub(r"\(\d\)$", "()", lowered) in _PG_NOW or re.match(r"^current_timestamp\(\d\)$", lowered):
        return DefaultValue(DefaultKind.NOW, stripped)
    return DefaultValue(DefaultKind.EXPRESSION, stripped)


_MY_LITERAL = re.compile(r"^'((?:[^'\\]|''|\\.)*)'$", re.DOTALL)
_MY_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$")
_MY_BITS = re.compile(r"^b'([01]*)'$")
_MY_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "b": "\b"}


def parse_mysql_default(text: str | None, *, mariadb: bool, expression: bool, text_type: bool) -> DefaultValue | None:
    """information_schema.COLUMNS.COLUMN_DEFAULT in neutral form. MariaDB shows SQL text (strings
    quoted, 'NULL' for no default); MySQL 8 shows a constant's value unquoted and an expression's text
    with EXTRA DEFAULT_GENERATED (`expression`)."""
    if text is None:
        return None
    stripped = text.strip()
    lowered = stripped.lower()
    if mariadb or expression:
        if lowered == "null":
            return None
        literal = _MY_LITERAL.match(stripped)
        if literal:
            return DefaultValue(DefaultKind.LITERAL, _unescape_mysql(literal.group(1)))
        if _MY_NUMBER.match(stripped):
            return DefaultValue(DefaultKind.NUMBER, stripped)
    else:  # MySQL 8 constant: the value itself
        if text_type or not (_MY_NUMBER.match(stripped) or _MY_BITS.match(stripped)):
            return DefaultValue(DefaultKind.LITERAL, text)
        if _MY_NUMBER.match(stripped):
            return DefaultValue(DefaultKind.NUMBER, stripped)
    bits = _MY_BITS.match(lowered)
    if bits:
        return DefaultValue(DefaultKind.NUMBER, str(int(bits.group(1) or "0", 2)))
    if re.match(r"^(current_timestamp|now|localtimestamp|localtime)(\(\d?\))?$", lowered):
        return DefaultValue(DefaultKind.NOW, stripped)
    return DefaultValue(DefaultKind.EXPRESSION, stripped)


def _unescape_mysql(body: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "'" and body[index + 1:index + 2] == "'":
            out.append("'")
            index += 2
            continue
        if char == "\\" and index + 1 < len(body):
            following = body[index + 1]
            out.append(_MY_ESCAPES.get(following, following))
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def is_zero_date(value: DefaultValue | None) -> bool:
    return value is not None and value.kind is DefaultKind.LITERAL and value.value.startswith("0000-00-00")
