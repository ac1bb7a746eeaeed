"""MySQL/MariaDB side of the reconciler: the canonical encoding (replicator.canonical) as SQL, chunk
checksums, bisection points and canonical rows, text keys in byte order (`CAST(… AS BINARY)`).

Sessions run with time_zone '+00:00' (TIMESTAMP values in UTC). Identifiers are quoted by
`quote_identifier` (and '%' doubled: every query here is %-formatted by pymysql), values are
parameters. Text is hashed as utf8mb4 whatever the column's character set (PostgreSQL hashes UTF-8).
JSON is canonicalised by MariaDB's JSON_NORMALIZE; MySQL 8 has no such function, and its own JSON text
(keys sorted by length, then bytes) is used there, which only a MySQL-to-MySQL pair can compare.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import pymysql

from replicator.canonical import PREFIXED, Checksum, ColumnRule, Family, same_scale
from replicator.config import Endpoint
from replicator.dialects.base import HashedTable, SnapshotPoint
from replicator.dialects.mysql import connect, key_positions
from replicator.dialects.mysql_snapshot import SPATIAL_TYPES, _ident, _key_expr, _table, range_condition
from replicator.dialects.mysql_values import event_converter
from replicator.errors import ReconcileError
from replicator.events import Row
from replicator.model import TableId

_SEPARATOR = ", ',', "
_FAMILIES: dict[str, Family] = {
    **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"), Family.INT),
    "decimal": Family.DECIMAL,
    "float": Family.FLOAT4,
    **dict.fromkeys(("double", "real"), Family.FLOAT8),
    "bit": Family.BITS,
    "char": Family.CHAR,
    **dict.fromkeys(("varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "inet6", "inet4"),
                    Family.TEXT),
    **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"), Family.BYTES),
    "uuid": Family.UUID,
    "json": Family.JSON,
    "date": Family.DATE,
    **dict.fromkeys(("datetime", "timestamp"), Family.TIMESTAMP),
    "time": Family.TIME,
    "point": Family.POINT,
}


def data_type(column_type: str) -> str:
    return column_type.partition("(")[0].split()[0].lower()


def family_of(column_type: str) -> Family:
    """The family of a MySQL/MariaDB column type (information_schema COLUMN_TYPE, or 'json'); other
    spatial types are NATIVE (their internal form)."""
    return _FAMILIES.get(data_type(column_type), Family.NATIVE)


def _float_text(text: str) -> str:
    """A float's text (either notation) as '<sign><digits>e<exponent of the first digit>'."""
    t = f"TRIM(LEADING '-' FROM {text})"
    mant = f"SUBSTRING_INDEX({t}, 'e', 1)"
    exp = f"IF(LOCATE('e', {t}) > 0, CAST(SUBSTRING_INDEX({t}, 'e', -1) AS SIGNED), 0)"
    ip = f"SUBSTRING_INDEX({mant}, '.', 1)"
    fp = f"IF(LOCATE('.', {mant}) > 0, SUBSTRING_INDEX({mant}, '.', -1), '')"
    digits = f"TRIM(TRAILING '0' FROM TRIM(LEADING '0' FROM CONCAT({ip}, {fp})))"
    first = (f"(IF(TRIM(LEADING '0' FROM {ip}) <> '', CHAR_LENGTH(TRIM(LEADING '0' FROM {ip})) - 1,"
             f" CHAR_LENGTH(TRIM(LEADING '0' FROM {fp})) - CHAR_LENGTH({fp}) - 1) + {exp})")
    return (f"IF({digits} = '', '0', CONCAT(IF(LEFT({text}, 1) = '-', '-', ''), {digits}, 'e', {first}))")


_Render = Callable[[str, str, bool, bool], str]
_ZERO = "YEAR({0}) = 0 OR MONTH({0}) = 0 OR DAYOFMONTH({0}) = 0"  # zero dates: NULL, as the copier writes them


def _decimal(c: str, own_type: str, same: bool, mariadb: bool) -> str:
    x = f"CAST({c} AS CHAR)"
    if data_type(own_type) != "decimal":
        return x
    trimmed = f"IF(LOCATE('.', {x}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {x})), {x})"
    return f"IF({trimmed} = '-0', '0', {trimmed})"


def _float(single: bool) -> _Render:
    def render(c: str, own_type: str, same: bool, mariadb: bool) -> str:
        if same:
            return f"CAST({c} AS CHAR)"
        if single and data_type(own_type) != "float":
            return _float_text(f"CAST(CAST({c} AS FLOAT) AS CHAR)")
        return _float_text(f"CAST({c} AS CHAR)")
    return render


def _bits(c: str, own_type: str, same: bool, mariadb: bool) -> str:
    if data_type(own_type) != "bit":
        return f"CAST({c} AS CHAR)"
    width = int(own_type.partition("(")[2].partition(")")[0] or 1)
    return f"LPAD(BIN({c} + 0), {width}, '0')"


def _timestamp(c: str, own_type: str, same: bool, mariadb: bool) -> str:
    if same:
        return f"CAST({c} AS CHAR)"
    # microseconds since 1970-01-01 UTC (the session's time zone is UTC); TO_SECONDS of a zero date, or
    # one with a zero part, is NULL (the copier writes those as NULL); twice cheaper than TIMESTAMPDIFF
    return f"CONCAT((TO_SECONDS({c}) - 62167219200) * 1000000 + MICROSECOND({c}))"


def _point(c: str, own_type: str, same: bool, mariadb: bool) -> str:
    if same:
        return f"LOWER(HEX({c}))"
    x = _float_text(f"CAST(ST_X({c}) AS CHAR)")
    y = _float_text(f"CAST(ST_Y({c}) AS CHAR)")
    return f"IF({c} IS NULL, NULL, CONCAT({x}, ' ', {y}))"


def _native(c: str, own_type: str, same: bool, mariadb: bool) -> str:
    return f"LOWER(HEX({c}))" if data_type(own_type) in SPATIAL_TYPES else f"CAST({c} AS CHAR)"


def _string(c: str, own_type: str, same: bool, mariadb: bool) -> str:
    if "character set" in own_type:  # see MySQLHashSide.columns
        return f"CONVERT({c} USING utf8mb4)"
    if data_type(own_type) in ("enum", "set"):
        return f"CAST({c} AS CHAR)"
    return c


def _template(text: str) -> _Render:
    return lambda c, own_type, same, mariadb: text.format(c)


_RENDER: dict[Family, _Render] = {
    Family.INT: _template("CONCAT({})"),  # the digits, as CAST(… AS CHAR) writes them, for less
    Family.DECIMAL: _decimal,
    Family.FLOAT8: _float(single=False),
    Family.FLOAT4: _float(single=True),
    Family.BOOL: _template("CASE WHEN {0} <> 0 THEN '1' WHEN {0} = 0 THEN '0' END"),
    Family.BITS: _bits,
    Family.TEXT: _string,
    Family.CHAR: _string,  # CHAR(n) is read without its trailing spaces
    Family.INTERVAL: _string,
    Family.BYTES: _template("LOWER(HEX({}))"),
    Family.UUID: _template("LOWER(CAST({} AS CHAR))"),
    Family.DATE: lambda c, own_type, same, mariadb: f"IF({_ZERO.format(c)}, NULL, CAST({c} AS CHAR))",
    Family.TIME: _template("CAST(CAST(TIME_TO_SEC({0}) * 1000000 AS SIGNED) AS CHAR)"),
    Family.TIMESTAMP: _timestamp,
    # through CONVERT: JSON_NORMALIZE of a JSON column that holds a lone number in exponent notation
    # reads past the value (MariaDB 10.11: '20.3e-15' after a longer row gave 2.03E-158)
    Family.JSON: lambda c, own_type, same, mariadb: f"JSON_NORMALIZE(CONVERT({c} USING utf8mb4))" if mariadb
    else f"CAST({c} AS CHAR)",
    Family.POINT: _point,
}


def canonical(rule: ColumnRule, own_type: str, *, same: bool, mariadb: bool = True) -> str:
    """The canonical text of a column as SQL (NULL stays NULL); no parameters."""
    if same_scale(rule):
        return f"CONCAT({_ident(rule.name)})"
    return _RENDER.get(rule.family, _native)(_ident(rule.name), own_type, same, mariadb)


def row_text(t: HashedTable, *, mariadb: bool = True) -> str:
    parts = []
    for rule in t.rules:
        text = canonical(rule, t.types[rule.name], same=t.same_type(rule), mariadb=mariadb)
        if rule.family in PREFIXED:
            text = f"CONCAT(CHAR_LENGTH({text}), ':', {text})"
        parts.append(f"IFNULL({text}, '~')")
    return f"CONCAT({_SEPARATOR.join(parts)})" if parts else "''"


class MySQLHashSide:
    """One MySQL/MariaDB connection of the reconciler (source or target side)."""

    fast_hash = False
    parallel_sum = False  # a grouped aggregate costs little more than a plain one (1.2x)

    def __init__(self, endpoint: Endpoint, role: str) -> None:
        self._conn = connect(endpoint, role)
        self.role = role
        with self._conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SELECT VERSION()")
            version = cur.fetchone()
        self._mariadb = "mariadb" in str(version[0] if version else "").lower()

    def close(self) -> None:
        self._conn.close()

    def one_process(self, on: bool) -> None:
        """A query runs in one thread here."""

    def family(self, type_name: str) -> Family:
        return family_of(type_name)

    def _rows(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(query, params)
                return list(cur.fetchall())
        except pymysql.MySQLError as exc:
            raise ReconcileError(f"{self.role}: {exc.args[-1]}") from None

    def columns(self, table: TableId) -> tuple[list[tuple[str, str]], tuple[str, ...]] | None:
        # one query per information_schema table, each naming the table by constants (see dialects/mysql.py)
        rows = self._rows(
            "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND EXTRA NOT LIKE %s ORDER BY ORDINAL_POSITION",
            (table.schema, table.name, "%GENERATED%"))
        if not rows:
            return None
        json_checked = set() if not self._mariadb else {str(r[0]) for r in self._rows(  # MariaDB's JSON
            "SELECT CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s"
            " AND TABLE_NAME = %s AND CHECK_CLAUSE LIKE 'json_valid(%%'", (table.schema, table.name))}
        positions = key_positions(self._rows, table)
        # a text column in another character set than utf8mb4 says so in its type: it is converted
        # before hashing (PostgreSQL hashes UTF-8); a utf8mb4 one is hashed as it is
        columns = [(str(n), "json" if str(n) in json_checked else str(t).lower() + (
            f" character set {str(cs).lower()}" if cs and str(cs).lower() not in ("utf8mb4", "binary") else ""))
            for n, t, cs in rows]
        key = tuple(n for _, n in sorted((positions[str(n)], str(n)) for n, _, _ in rows if str(n) in positions))
        return columns, key

    def checksum(self, t: HashedTable, low: tuple[Any, ...] | None, high: tuple[Any, ...] | None) -> Checksum:
        row = row_text(t, mariadb=self._mariadb)
        kinds = t.range_kinds
        where, params = range_condition(t.key, kinds, low, high) if kinds is not None else ("TRUE", [])
        result = self._rows(f"SELECT COUNT(*), SUM(CAST(CONV(SUBSTRING(MD5({row}), 1, 16), 16, 10) AS UNSIGNED))"
                            f" FROM {_table(t.table)} WHERE {where}", params)
        return Checksum.of(result[0][0], result[0][1])

    def split(self, t: HashedTable, low: tuple[Any, ...] | None, high: tuple[Any, ...] | None,
              every: int) -> list[tuple[Any, ...]]:
        kinds = t.range_kinds
        assert kinds is not None
        columns = ", ".join(_ident(c) for c in t.key)
        order = ", ".join(_key_expr(c, k) for c, k in zip(t.key, kinds, strict=True))
        where, params = range_condition(t.key, kinds, low, high)
        rows = self._rows(f"SELECT {columns} FROM (SELECT {columns}, ROW_NUMBER() OVER (ORDER BY {order}) AS n"
                          f" FROM {_table(t.table)} WHERE {where}) s WHERE n MOD %s = 1 AND n > 1 ORDER BY n",
                          [*params, every])
        return [tuple(r) for r in rows]

    def buckets(self, t: HashedTable, low: int, high: int, width: int) -> dict[int, Checksum]:
        row = row_text(t, mariadb=self._mariadb)
        key = _ident(t.key[0])
        result = self._rows(f"SELECT ({key} - %s) DIV %s, COUNT(*),"
                            f" SUM(CAST(CONV(SUBSTRING(MD5({row}), 1, 16), 16, 10) AS UNSIGNED))"
                            f" FROM {_table(t.table)} WHERE {key} >= %s AND {key} < %s GROUP BY 1",
                            (low, width, low, high))
        return {int(b): Checksum.of(n, total) for b, n, total in result}

    def bounds(self, t: HashedTable) -> tuple[int, int] | None:
        column = _ident(t.key[0])
        low, high = self._rows(f"SELECT MIN({column}), MAX({column}) FROM {_table(t.table)}")[0]
        return None if low is None else (int(low), int(high))

    def rows(self, t: HashedTable, spans: Sequence[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]],
             ) -> Generator[tuple[tuple[Any, ...], tuple[str | None, ...]], None, None]:
        texts = [canonical(r, t.types[r.name], same=t.same_type(r), mariadb=self._mariadb) for r in t.rules]
        by_name = {r.name: text for r, text in zip(t.rules, texts, strict=True)}
        sort: list[str] = []
        order: list[str] = []
        for column, kind in zip(t.key, t.kinds, strict=True):
            if kind == "int":
                sort.append(_ident(column))
                order.append(_ident(column))
            else:
                text = f"CONVERT({_ident(column)} USING utf8mb4)" if kind == "text" else by_name[column]
                sort.append(text)
                order.append(f"CAST({text} AS BINARY)")
        if not t.key:
            text = row_text(t, mariadb=self._mariadb)
            sort.append(text)
            order.append(f"CAST({text} AS BINARY)")
        kinds = t.range_kinds
        where, params = "TRUE", []
        if kinds is not None:
            conditions = [range_condition(t.key, kinds, low, high) for low, high in spans]
            where = " OR ".join(f"({c})" for c, _ in conditions)
            params = [p for _, values in conditions for p in values]
        cursor = self._conn.cursor(pymysql.cursors.SSCursor)
        width = len(sort)
        try:
            cursor.execute(f"SELECT {', '.join(sort)}, {', '.join(texts) or 'NULL'} FROM {_table(t.table)}"
                           f" WHERE {where} ORDER BY {', '.join(order)}", params)
            for record in cursor:
                yield (tuple(v if isinstance(v, int) else _text(v) for v in record[:width]),
                       tuple(None if v is None else _text(v) for v in record[width:]))
        except pymysql.MySQLError as exc:
            raise ReconcileError(f"{self.role}: {exc.args[-1]}") from None
        finally:
            cursor.close()

    def values(self, t: HashedTable, low: tuple[Any, ...] | None,
               high: tuple[Any, ...] | None) -> Generator[tuple[tuple[str | None, ...], Row], None, None]:
        by_name = {r.name: r for r in t.rules}
        keys = [canonical(by_name[k], t.types[k], same=t.same_type(by_name[k]), mariadb=self._mariadb)
                for k in t.key] or [canonical(r, t.types[r.name], same=t.same_type(r), mariadb=self._mariadb)
                                    for r in t.rules]
        kinds = t.range_kinds
        where, params = range_condition(t.key, kinds, low, high) if kinds is not None else ("TRUE", [])
        names = [r.name for r in t.rules]
        rows = self._rows(f"SELECT {', '.join(keys)}, {', '.join(_ident(n) for n in names)} FROM {_table(t.table)}"
                          f" WHERE {where}", params)
        width = len(keys)
        converters = [(i, convert) for i, n in enumerate(names) if (convert := event_converter(t.types[n])) is not None]
        for record in rows:
            values = list(record[width:])
            for i, convert in converters:
                if values[i] is not None:
                    values[i] = convert(values[i])
            yield (tuple(None if v is None else _text(v) for v in record[:width]),
                   dict(zip(names, values, strict=True)))

    # -- read views ------------------------------------------------------------------------------
    def open_view(self) -> SnapshotPoint:
        """A consistent snapshot (REPEATABLE READ set explicitly) and its binlog position."""
        with self._conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cur.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
        file, pos = status.get("binlog_snapshot_file"), status.get("binlog_snapshot_position")
        if not file or pos is None:
            self._conn.rollback()
            raise ReconcileError(f"{self.role}: the server does not report the binlog position of a snapshot",
                                 hint="anchored rechecks need MariaDB's binlog_snapshot_position")
        return SnapshotPoint("", {"mysql": {"file": int(file.rpartition(".")[2]), "pos": int(pos)}})

    def close_view(self) -> None:
        if self._conn.open:
            self._conn.rollback()


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="surrogateescape")
    return str(value)
