"""The canonical row encoding of the reconciler: one text per value, identical on PostgreSQL and
MySQL/MariaDB for equal values, so that a row hashes the same on both engines. No I/O here; each
dialect renders these rules as SQL (replicator.dialects.postgres_hash, replicator.dialects.mysql_hash).

A column's *family* decides its canonical text. Each side names the family of its own column type;
`resolve` joins the two (a MySQL TINYINT(1) that became a PostgreSQL boolean is compared as a boolean,
a BIGINT UNSIGNED that became numeric(20) as a decimal). The rules, per family:

* int: decimal digits, '-' for negatives (YEAR as its number).
* decimal: scale-insensitive: no trailing fractional zeros, no trailing '.', '-0' is '0' (1.50 = 1.5);
  PostgreSQL's NaN, Infinity, -Infinity as such. A column with the same fixed scale on both sides
  (DECIMAL(12,3) and numeric(12,3)) compares its plain text, which both engines write with exactly
  that many fractional digits: the same values, the same texts, without the trimming's cost.
* float8: the shortest text that reads back as the same IEEE double, as digits and the exponent of
  the first digit ('2718281828459045e0' for 2.718281828459045, '-1e300', '0'): equal iff the same
  double; NaN, Infinity, -Infinity as such. Same-engine pairs compare the engine's own shortest text.
* float4: 6 significant digits (FLT_DIG, what MySQL prints of a FLOAT), written as float8.
* bool: '1' or '0' (PostgreSQL boolean; a MySQL TINYINT(1) or BIT(1) compared with a boolean:
  non-zero is '1').
* bits: the bit string, '0'/'1' per bit, left-padded to the column's width.
* text: the characters, exactly (trailing spaces count); enums and sets as their label text.
* char: CHAR(n) without trailing spaces (both engines pad CHAR(n) with spaces and read it without).
* bytes: lower-case hex. uuid: lower-case hyphenated text.
* date: 'YYYY-MM-DD' (PostgreSQL also 'YYYY-MM-DD BC', 'infinity'); MySQL zero dates are NULL.
* time: microseconds since midnight (MySQL TIME may be negative or past 24 h; PostgreSQL timetz in
  UTC; a PostgreSQL interval holding a MySQL TIME as its microseconds).
* timestamp: microseconds since 1970-01-01 00:00 UTC: with time zone normalised to UTC, without it
  read as UTC; PostgreSQL ±infinity as 'infinity' / '-infinity'; MySQL zero dates are NULL.
  Same-engine pairs compare the engine's text of it in UTC.
* interval: PostgreSQL's ISO 8601 text (IntervalStyle iso_8601), as the copier writes it into a
  MySQL text column.
* json: key order and whitespace insensitive. Across engines: keys sorted by the bytes of their
  escaped JSON text (as JSON_NORMALIZE sorts them), no
  whitespace, numbers as exact decimals in the form MariaDB's JSON_NORMALIZE writes ('1.5E0',
  '1.234567890123456789E19'), strings as escaped in the stored text (PostgreSQL jsonb's escaping,
  which the copier and the applier write). PostgreSQL→PostgreSQL: jsonb's text (keys ordered,
  whitespace normalised), which keeps a number's digits as written: a 2.50 that became 2.5 hashes
  differently, and the row comparison (which reads JSON as values) then finds the rows equal; the
  stream and the copy both carry the digits as written, so this costs a recheck only after an edit.
* point: 'x y', each coordinate as float8.
* native: a type only its own engine knows, compared on that engine by its text (arrays, ranges,
  inet, tsvector…; MySQL spatial values as hex of their internal form).

Test vectors (type, SQL literal, family, canonical text) for both engines are shipped in
tests/fixtures/canonical_vectors.json and checked against the real engines by the test suite.

A row's text joins its columns' texts with ',' in column order; NULL is '~' (distinct from ''), and
the texts of free-text families (text, char, json, native) are written `<length in characters>:<text>`,
so no value can run into the next. A row's hash is the first 64 bits of the md5 of that text, read as
an integer; a chunk's checksum is its row count and the sum of its rows' hashes modulo 2^64 (order
independent; PostgreSQL reads the slice as a signed bigint, MySQL as unsigned: equal modulo 2^64).
Same-engine PostgreSQL pairs use `hashtextextended` over the same row text instead of md5 (both
sides agree on it; about twice as fast).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Family(StrEnum):
    INT = "int"
    DECIMAL = "decimal"
    FLOAT8 = "float8"
    FLOAT4 = "float4"
    BOOL = "bool"
    BITS = "bits"
    TEXT = "text"
    CHAR = "char"
    BYTES = "bytes"
    UUID = "uuid"
    DATE = "date"
    TIME = "time"
    TIMESTAMP = "timestamp"
    INTERVAL = "interval"
    JSON = "json"
    ARRAY = "array"  # PostgreSQL array: native to PostgreSQL, JSON into MySQL
    POINT = "point"
    NATIVE = "native"  # a type only its own engine knows: compared on the same engine only


# Families whose canonical text may hold any character: written with a length prefix.
PREFIXED = frozenset({Family.TEXT, Family.CHAR, Family.JSON, Family.NATIVE})

# Pairs of families that describe the same values across engines, and the family they compare as.
_JOINS: dict[frozenset[Family], Family] = {
    frozenset({Family.INT, Family.BOOL}): Family.BOOL,  # TINYINT(1) ↔ boolean
    frozenset({Family.BITS, Family.BOOL}): Family.BOOL,  # BIT(1) ↔ boolean
    frozenset({Family.INT, Family.DECIMAL}): Family.DECIMAL,  # BIGINT UNSIGNED ↔ numeric(20)
    frozenset({Family.TIME, Family.INTERVAL}): Family.TIME,  # MySQL TIME ↔ interval
    frozenset({Family.FLOAT4, Family.FLOAT8}): Family.FLOAT4,
    frozenset({Family.INTERVAL, Family.TEXT}): Family.INTERVAL,  # interval ↔ VARCHAR (ISO 8601)
    frozenset({Family.ARRAY, Family.JSON}): Family.JSON,  # array ↔ JSON
    frozenset({Family.UUID, Family.TEXT}): Family.UUID,  # uuid ↔ CHAR(36)
    frozenset({Family.UUID, Family.CHAR}): Family.UUID,
    frozenset({Family.BITS, Family.TEXT}): Family.BITS,  # varbit ↔ VARCHAR
    frozenset({Family.CHAR, Family.TEXT}): Family.TEXT,
    frozenset({Family.NATIVE, Family.TEXT}): Family.TEXT,  # inet, xml, macaddr… ↔ VARCHAR/TEXT
    frozenset({Family.NATIVE, Family.CHAR}): Family.TEXT,
    frozenset({Family.INT, Family.TEXT}): Family.TEXT,  # e.g. an override to a text type
}


def resolve(source: Family, target: Family) -> Family | None:
    """The family a column is compared as, given each side's; None when they cannot be compared."""
    if source is target:
        return source
    return _JOINS.get(frozenset({source, target}))


@dataclass(frozen=True)
class ColumnRule:
    """How one column is compared: its family, and its type on each side (as each catalog spells it)."""

    name: str
    family: Family
    source_type: str
    target_type: str


def same_scale(rule: ColumnRule) -> bool:
    """A decimal column with the same fixed scale on both sides: its plain text is canonical already
    (both engines write exactly `scale` fractional digits and no negative zero)."""
    def scale(type_name: str) -> str | None:
        inside = type_name.partition("(")[2].partition(")")[0]
        return inside.partition(",")[2].strip() or None if "," in inside else None
    return rule.family is Family.DECIMAL and scale(rule.source_type) is not None \
        and scale(rule.source_type) == scale(rule.target_type)


def join_row(texts: list[str | None], families: list[Family]) -> str:
    """The canonical row text of canonical column texts (the reference the SQL of each dialect follows)."""
    parts = []
    for text, family in zip(texts, families, strict=True):
        if text is None:
            parts.append("~")
        elif family in PREFIXED:
            parts.append(f"{len(text)}:{text}")
        else:
            parts.append(text)
    return ",".join(parts)


HASH_MODULUS = 1 << 64


@dataclass(frozen=True)
class Checksum:
    """A key range's row count and the sum of its rows' 64-bit hashes modulo 2^64."""

    rows: int
    total: int

    @classmethod
    def of(cls, rows: int, total: object) -> Checksum:
        return cls(int(rows), int(str(total or 0).split(".")[0]) % HASH_MODULUS)

    @classmethod
    def add(cls, parts: Iterable[Checksum]) -> Checksum:
        """The checksum of the union of disjoint ranges."""
        rows = total = 0
        for part in parts:
            rows, total = rows + part.rows, total + part.total
        return cls(rows, total % HASH_MODULUS)
