"""PostgreSQL side of the reconciler: the canonical encoding (replicator.canonical) as SQL, chunk
checksums, bisection points and canonical rows, in byte order of the keys.

Sessions run with TimeZone UTC, DateStyle ISO, IntervalStyle iso_8601 and extra_float_digits 1
(shortest round-trip float text), so every text below is independent of server defaults. Identifiers
are composed by psycopg's `sql.Identifier`, bound values are `sql.Literal`s (no %-parameters beside
composed identifiers: a '%' in a name would be read as one).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from typing import Any

import psycopg
from psycopg import sql

from replicator.canonical import PREFIXED, Checksum, ColumnRule, Family, same_scale
from replicator.config import Endpoint
from replicator.dialects.base import HashedTable, SnapshotPoint
from replicator.dialects.postgres import connect
from replicator.dialects.postgres_snapshot import key_order, range_condition
from replicator.dialects.postgres_values import event_cursor, event_expression
from replicator.errors import ReconcileError
from replicator.events import Row
from replicator.model import TableId

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       COALESCE((SELECT k.ord FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) WHERE k.attnum = a.attnum), 0),
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""

_FAMILIES: dict[str, Family] = {
    **dict.fromkeys(("smallint", "integer", "bigint", "oid"), Family.INT),
    **dict.fromkeys(("numeric", "money"), Family.DECIMAL),
    "real": Family.FLOAT4,
    "double precision": Family.FLOAT8,
    "boolean": Family.BOOL,
    **dict.fromkeys(("bit", "bit varying"), Family.BITS),
    **dict.fromkeys(("text", "character varying", "name", "citext", '"char"'), Family.TEXT),
    **dict.fromkeys(("character", "char"), Family.CHAR),
    "bytea": Family.BYTES,
    "uuid": Family.UUID,
    "date": Family.DATE,
    **dict.fromkeys(("time", "time without time zone", "time with time zone"), Family.TIME),
    **dict.fromkeys(("timestamp", "timestamp without time zone", "timestamp with time zone"), Family.TIMESTAMP),
    "interval": Family.INTERVAL,
    **dict.fromkeys(("json", "jsonb"), Family.JSON),
    "point": Family.POINT,
}


def _base(type_name: str) -> str:
    """'timestamp(3) with time zone' → 'timestamp with time zone'; 'numeric(12,3)' → 'numeric'."""
    head, _, rest = type_name.partition("(")
    return " ".join((head + rest.partition(")")[2]).split())


def family_of(type_name: str) -> Family:
    """The family of a PostgreSQL type as format_type() spells it; any other type is NATIVE (enums,
    inet, xml, ranges, tsvector…: their text)."""
    if type_name.endswith("[]"):
        return Family.ARRAY
    return _FAMILIES.get(_base(type_name), Family.NATIVE)


def _float_text(text: sql.Composable) -> sql.Composable:
    """A float's text (either notation) as '<sign><digits>e<exponent of the first digit>'."""
    t = sql.SQL("ltrim({}, '-')").format(text)
    mant = sql.SQL("split_part({}, 'e', 1)").format(t)
    exp = sql.SQL("COALESCE(NULLIF(split_part({}, 'e', 2), ''), '0')::int").format(t)
    ip = sql.SQL("split_part({}, '.', 1)").format(mant)
    fp = sql.SQL("split_part({}, '.', 2)").format(mant)
    digits = sql.SQL("rtrim(ltrim({} || {}, '0'), '0')").format(ip, fp)
    first = sql.SQL("(CASE WHEN ltrim({ip}, '0') <> '' THEN length(ltrim({ip}, '0')) - 1"
                    " ELSE length(ltrim({fp}, '0')) - length({fp}) - 1 END + {exp})").format(ip=ip, fp=fp, exp=exp)
    return sql.SQL("CASE WHEN {d} = '' THEN '0' ELSE CASE WHEN left({t0}, 1) = '-' THEN '-' ELSE '' END"
                   " || {d} || 'e' || {first} END").format(d=digits, t0=text, first=first)


def _json_text(value: sql.Composable) -> sql.Composable:
    return sql.SQL("pg_temp.replicator_json_canonical({})").format(value)


_Render = Callable[[sql.Composable, str, bool], sql.Composable]


def _decimal(c: sql.Composable, own_type: str, same: bool) -> sql.Composable:
    if same and "," in own_type:  # a fixed scale on both sides: the text is canonical already
        return sql.SQL("{}::text").format(c)
    return sql.SQL("trim_scale({}::numeric)::text").format(c)


def _shortest(c: sql.Composable) -> sql.Composable:
    """A double's shortest round-trip text as MySQL/MariaDB writes it. PostgreSQL's output excludes the
    bounds of the interval that reads back as the value, MariaDB's includes them: where a text of 15
    or 16 significant digits lies exactly half an ulp away (it happens from 2^53 on), MariaDB writes it
    and PostgreSQL writes 17 digits. So the 15- and 16-digit roundings are tried first."""
    n = sql.SQL("{}::text::numeric").format(c)
    digits = sql.SQL("floor(log(abs({})))::int").format(n)
    r15 = sql.SQL("round({}, 14 - {})").format(n, digits)
    r16 = sql.SQL("round({}, 15 - {})").format(n, digits)
    # (not near the largest double: a rounding up there would not read back as a double at all)
    return sql.SQL("CASE WHEN {c} = 0 OR abs({c}) >= 1e308 THEN {c}::text WHEN {r15}::float8 = {c} THEN {r15}::text"
                   " WHEN {r16}::float8 = {c} THEN {r16}::text ELSE {c}::text END").format(c=c, r15=r15, r16=r16)


def _float(single: bool) -> _Render:
    def render(c: sql.Composable, own_type: str, same: bool) -> sql.Composable:
        if same:
            return sql.SQL("{}::text").format(c)  # shortest round-trip text: equal iff the same value
        # float4::numeric keeps 6 significant digits (FLT_DIG), as MySQL prints a FLOAT
        text = sql.SQL("{}::real::numeric::text").format(c) if single else _shortest(c)
        return sql.SQL("CASE WHEN {0} IN ('NaN', 'Infinity', '-Infinity') THEN {0}::text ELSE {1} END").format(
            c, _float_text(text))
    return render


def _bool(c: sql.Composable, own_type: str, same: bool) -> sql.Composable:
    family = family_of(own_type)
    if family is Family.BITS:
        return sql.SQL("({}::text <> repeat('0', length({}::text)))::int::text").format(c, c)
    if family in (Family.INT, Family.DECIMAL):
        return sql.SQL("({} <> 0)::int::text").format(c)
    return sql.SQL("{}::int::text").format(c)


def _day_micros(time_value: sql.Composable) -> sql.Composable:
    """The microseconds of a time of day, exactly: date_part gives the seconds as a double (below 86,401
    with 6 decimals: within 1e-11 of the value), rounded back to an integer. extract() would compute
    them in numeric, twice the cost."""
    return sql.SQL("round(date_part('epoch', {}) * 1000000)::bigint").format(time_value)


def _time(c: sql.Composable, own_type: str, same: bool) -> sql.Composable:
    value = sql.SQL("({} AT TIME ZONE 'UTC')::time").format(c) if "with time zone" in own_type else c
    return sql.SQL("{}::text").format(_day_micros(value))


def _timestamp(c: sql.Composable, own_type: str, same: bool) -> sql.Composable:
    if same:
        return sql.SQL("{}::text").format(c)  # in UTC, ISO: canonical for one type on one engine
    # microseconds since 1970-01-01 UTC as days and the time of day (the session's time zone is UTC),
    # in integers: 0.43 against 0.75 s per 1M values for (extract(epoch …) * 1000000)::bigint. A
    # timestamptz is made a timestamp (its UTC wall time) first: its date and time of day are then read
    # without a time zone conversion each (0.27 against 0.34 s per 1M values)
    #
    # Between 1900 and 2100 one date_part does it, exactly (0.06 s less per 1M values): date_part('epoch')
    # divides the exact integer m of microseconds since 1970 by 1e6 in a double, once; |m / 1e6| < 2^32,
    # so that quotient is within 2^-22 of the real one (half an ulp), which puts the product by 1e6
    # within 0.239 of m, and that product (below 2^52) is rounded within 0.25 more: 0.489 < 0.5 in
    # all, and round() gives m itself. Outside that range, the integers (from 1700 to 2300, about 1% of
    # the values would be off by one through the double).
    wall = sql.SQL("({})::timestamp").format(c) if "with time zone" in own_type else sql.SQL("({})").format(c)
    kind = sql.SQL("TIMESTAMPTZ" if "with time zone" in own_type else "TIMESTAMP")
    return sql.SQL("CASE WHEN {0} >= {3} '1900-01-01 00:00:00+00' AND {0} < {3} '2100-01-01 00:00:00+00'"
                   " THEN round(date_part('epoch', {0}) * 1000000)::bigint::text"
                   " WHEN isfinite({0}) THEN (({1}::date - DATE '1970-01-01')::bigint * 86400000000 + {2})"
                   "::text ELSE {0}::text END").format(c, wall, _day_micros(sql.SQL("{}::time").format(wall)), kind)


def _json(c: sql.Composable, own_type: str, same: bool) -> sql.Composable:
    if same:  # jsonb's text: keys ordered, whitespace normalised; numbers keep their digits as written
        return sql.SQL("{}::jsonb::text").format(c)
    value = sql.SQL("array_to_json({})::jsonb" if own_type.endswith("[]") else "{}::jsonb").format(c)
    return sql.SQL("pg_temp.replicator_json_canonical({})").format(value)


def _point(c: sql.Composable, own_type: str, same: bool) -> sql.Composable:
    if same:
        return sql.SQL("{}::text").format(c)
    x = _float_text(_shortest(sql.SQL("({}[0])").format(c)))
    y = _float_text(_shortest(sql.SQL("({}[1])").format(c)))
    return sql.SQL("CASE WHEN {} IS NOT NULL THEN {} || ' ' || {} END").format(c, x, y)


def _template(text: str) -> _Render:
    return lambda c, own_type, same: sql.SQL(text).format(c)


_RENDER: dict[Family, _Render] = {
    Family.DECIMAL: _decimal,
    Family.FLOAT8: _float(single=False),
    Family.FLOAT4: _float(single=True),
    Family.BOOL: _bool,
    Family.BYTES: _template("encode({}, 'hex')"),
    Family.UUID: _template("lower({}::text)"),
    Family.TIME: _time,
    Family.TIMESTAMP: _timestamp,
    Family.JSON: _json,
    Family.POINT: _point,
}


def canonical(rule: ColumnRule, own_type: str, *, same: bool) -> sql.Composable:
    """The canonical text of a column (NULL stays NULL). `same`: both sides are PostgreSQL with this type.
    int, text, char (bpchar's text drops trailing spaces), bits, date, interval (ISO 8601), arrays and
    native types: their text in the session's settings."""
    render = _RENDER.get(rule.family)
    c = sql.Identifier(rule.name)
    if same_scale(rule):
        return sql.SQL("{}::text").format(c)
    if render is not None:
        return render(c, own_type, same)
    if family_of(own_type) is Family.NATIVE:  # the type's output function (inet::text adds a /128 mask)
        return sql.SQL("CASE WHEN {0} IS NOT NULL THEN format('%s', {0}) END").format(c)
    return sql.SQL("{}::text").format(c)


_JOINED = 99  # concat_ws takes at most 100 arguments, the separator included


def row_text(t: HashedTable) -> sql.Composable:
    """The columns' canonical texts joined by ',' (NULL as '~'). One concat_ws builds the text at once
    (each `||` copied the text so far again: 3-4% of the row hash query's time on 8 columns); wider
    tables join concat_ws of at most `_JOINED` columns each (no part is NULL: no separator is skipped)."""
    parts: list[sql.Composable] = []
    for rule in t.rules:
        text = canonical(rule, t.types[rule.name], same=t.same_type(rule))
        if rule.family in PREFIXED:
            text = sql.SQL("length({0}) || ':' || {0}").format(text)
        parts.append(sql.SQL("COALESCE({}, '~')").format(text))
    while len(parts) > 1:
        parts = [sql.SQL("concat_ws(',', {})").format(sql.SQL(", ").join(parts[i:i + _JOINED]))
                 for i in range(0, len(parts), _JOINED)]
    return parts[0] if parts else sql.SQL("''")


# The JSON canonical form (replicator.canonical): compact, numbers as MariaDB's JSON_NORMALIZE writes
# them, keys sorted as it sorts them: by the bytes of their escaped JSON text (without the quotes).
# Created in the session's temporary schema: nothing is left behind.
_JSON_FUNCTION = r"""
CREATE OR REPLACE FUNCTION pg_temp.replicator_json_canonical(j jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
SELECT CASE jsonb_typeof(j)
  WHEN 'object' THEN '{' || COALESCE((SELECT string_agg(to_json(k)::text || ':' || pg_temp.replicator_json_canonical(v),
                                     ',' ORDER BY substr(to_json(k)::text, 2, length(to_json(k)::text) - 2) COLLATE "C")
                                     FROM jsonb_each(j) AS e(k, v)), '') || '}'
  WHEN 'array' THEN '[' || COALESCE((SELECT string_agg(pg_temp.replicator_json_canonical(v), ',' ORDER BY n)
                                    FROM jsonb_array_elements(j) WITH ORDINALITY AS e(v, n)), '') || ']'
  WHEN 'number' THEN (SELECT CASE WHEN d = '' THEN '0.0E0' ELSE s || left(d, 1) || '.' ||
                             CASE WHEN length(d) > 1 THEN substr(d, 2) ELSE '0' END || 'E' || e END
                      FROM (SELECT CASE WHEN n < 0 THEN '-' ELSE '' END AS s,
                                   rtrim(ltrim(split_part(a, '.', 1) || split_part(a, '.', 2), '0'), '0') AS d,
                                   CASE WHEN ltrim(split_part(a, '.', 1), '0') <> ''
                                        THEN length(ltrim(split_part(a, '.', 1), '0')) - 1
                                        ELSE length(ltrim(split_part(a, '.', 2), '0'))
                                             - length(split_part(a, '.', 2)) - 1
                                   END AS e
                            FROM (SELECT j::text::numeric AS n, abs(j::text::numeric)::text AS a) AS x) AS y)
  ELSE j::text
END
$f$
"""


class PostgresHashSide:
    """One PostgreSQL connection of the reconciler (source or target side)."""

    fast_hash = True  # hashtextextended: when both sides are PostgreSQL with the same types
    # a plain aggregate runs in parallel workers; one grouped by piece (the planner cannot estimate
    # the number of pieces) sorts or runs in one process: about twice the time
    parallel_sum = True

    def __init__(self, endpoint: Endpoint, role: str) -> None:
        self._conn: psycopg.Connection[Any] = connect(endpoint, role, autocommit=True)
        self._conn.execute("SET TIME ZONE 'UTC'")
        self._conn.execute("SET DateStyle = 'ISO, YMD'")
        self._conn.execute("SET IntervalStyle = 'iso_8601'")
        self._conn.execute("SET extra_float_digits = 1")
        self._conn.execute(_JSON_FUNCTION)  # in the session's temporary schema: gone when it ends
        self.role = role

    def close(self) -> None:
        self._conn.close()

    def one_process(self, on: bool) -> None:
        self._conn.execute("SET max_parallel_workers_per_gather = 0" if on else "RESET max_parallel_workers_per_gather")

    def family(self, type_name: str) -> Family:
        return family_of(type_name)

    def columns(self, table: TableId) -> tuple[list[tuple[str, str]], tuple[str, ...]] | None:
        """(columns with their types, primary key) of the table; None when it does not exist."""
        regclass = sql.Identifier(table.schema, table.name).as_string(self._conn)
        exists = self._conn.execute("SELECT to_regclass(%s)", (regclass,)).fetchone()
        if exists is None or exists[0] is None:
            return None
        rows = self._conn.execute(_COLUMNS, (regclass,)).fetchall()
        columns = [(str(n), str(base or t)) for n, t, _, base in rows]
        key = tuple(str(n) for _, n in sorted((int(p), n) for n, _, p, _ in rows if int(p) > 0))
        return columns, key

    def checksum(self, t: HashedTable, low: tuple[Any, ...] | None, high: tuple[Any, ...] | None) -> Checksum:
        row = row_text(t)
        hashed = sql.SQL("hashtextextended({}, 0)").format(row) if t.fast \
            else sql.SQL("('x' || substr(md5({}), 1, 16))::bit(64)::bigint").format(row)
        kinds = t.range_kinds
        where = range_condition(t.key, kinds, low, high) if kinds is not None else sql.SQL("true")
        query = sql.SQL("SELECT count(*), sum({}) FROM {} WHERE {}").format(
            hashed, sql.Identifier(t.table.schema, t.table.name), where)
        result = self._execute(query).fetchone()
        assert result is not None
        return Checksum.of(result[0], result[1])

    def split(self, t: HashedTable, low: tuple[Any, ...] | None, high: tuple[Any, ...] | None,
              every: int) -> list[tuple[Any, ...]]:
        kinds = t.range_kinds
        assert kinds is not None
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in t.key)
        order = sql.SQL(", ").join(key_order(c, k) for c, k in zip(t.key, kinds, strict=True))
        query = sql.SQL(
            "SELECT {cols} FROM (SELECT {cols}, row_number() OVER (ORDER BY {order}) AS n FROM {table}"
            " WHERE {where}) s WHERE n % {every} = 1 AND n > 1 ORDER BY n").format(
            cols=columns, order=order, table=sql.Identifier(t.table.schema, t.table.name),
            where=range_condition(t.key, kinds, low, high), every=sql.Literal(every))
        return [tuple(r) for r in self._execute(query).fetchall()]

    def buckets(self, t: HashedTable, low: int, high: int, width: int) -> dict[int, Checksum]:
        row = row_text(t)
        hashed = sql.SQL("hashtextextended({}, 0)").format(row) if t.fast \
            else sql.SQL("('x' || substr(md5({}), 1, 16))::bit(64)::bigint").format(row)
        key = sql.Identifier(t.key[0])
        integer = family_of(t.types[t.key[0]]) is Family.INT
        bucket = sql.SQL("({} - {}) / {}" if integer else "div({} - {}, {})").format(
            key, sql.Literal(low), sql.Literal(width))
        query = sql.SQL("SELECT {b}, count(*), sum({h}) FROM {t} WHERE {k} >= {lo} AND {k} < {hi} GROUP BY 1").format(
            b=bucket, h=hashed, t=sql.Identifier(t.table.schema, t.table.name), k=key, lo=sql.Literal(low),
            hi=sql.Literal(high))
        return {int(b): Checksum.of(n, total) for b, n, total in self._execute(query).fetchall()}

    def bounds(self, t: HashedTable) -> tuple[int, int] | None:
        row = self._execute(sql.SQL("SELECT min({0}), max({0}) FROM {1}").format(
            sql.Identifier(t.key[0]), sql.Identifier(t.table.schema, t.table.name))).fetchone()
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    def rows(self, t: HashedTable, spans: Sequence[tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]],
             ) -> Generator[tuple[tuple[Any, ...], tuple[str | None, ...]], None, None]:
        texts = [canonical(r, t.types[r.name], same=t.same_type(r)) for r in t.rules]
        by_name = {r.name: text for r, text in zip(t.rules, texts, strict=True)}
        sort: list[sql.Composable] = []
        for column, kind in zip(t.key, t.kinds, strict=True):
            if kind == "int":
                sort.append(sql.Identifier(column))
            elif kind == "text":
                sort.append(sql.SQL('{}::text COLLATE "C"').format(sql.Identifier(column)))
            else:
                sort.append(sql.SQL('({}) COLLATE "C"').format(by_name[column]))
        if not t.key:
            sort.append(sql.SQL('({}) COLLATE "C"').format(row_text(t)))
        kinds = t.range_kinds
        where: sql.Composable = sql.SQL("true")
        if kinds is not None:
            where = sql.SQL(" OR ").join(sql.SQL("({})").format(range_condition(t.key, kinds, low, high))
                                         for low, high in spans)
        query = sql.SQL("SELECT {}, {} FROM {} WHERE {} ORDER BY {}").format(
            sql.SQL(", ").join(sort), sql.SQL(", ").join(texts) if texts else sql.SQL("NULL"),
            sql.Identifier(t.table.schema, t.table.name), where,
            sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(sort))))
        width = len(sort)
        idle = self._conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            with self._conn.transaction() if idle else nullcontext(), self._conn.cursor(name="rows") as cur:
                cur.itersize = 2000
                cur.execute(query)
                for record in cur:
                    yield tuple(record[:width]), tuple(None if v is None else str(v) for v in record[width:])
        except psycopg.Error as exc:
            raise ReconcileError(f"{self.role}: {str(exc).splitlines()[0]}") from None

    def values(self, t: HashedTable, low: tuple[Any, ...] | None,
               high: tuple[Any, ...] | None) -> Generator[tuple[tuple[str | None, ...], Row], None, None]:
        by_name = {r.name: r for r in t.rules}
        keys = [canonical(by_name[k], t.types[k], same=t.same_type(by_name[k])) for k in t.key] or \
            [canonical(r, t.types[r.name], same=t.same_type(r)) for r in t.rules]
        kinds = t.range_kinds
        where = range_condition(t.key, kinds, low, high) if kinds is not None else sql.SQL("true")
        names = [r.name for r in t.rules]
        query = sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(keys), sql.SQL(", ").join(event_expression(n, t.types[n]) for n in names),
            sql.Identifier(t.table.schema, t.table.name), where)
        width = len(keys)
        try:
            with event_cursor(self._conn) as cursor:
                records = cursor.execute(query).fetchall()
        except psycopg.Error as exc:
            raise ReconcileError(f"{self.role}: {str(exc).splitlines()[0]}") from None
        for record in records:
            yield (tuple(None if v is None else str(v) for v in record[:width]),
                   dict(zip(names, record[width:], strict=True)))

    # -- read views ------------------------------------------------------------------------------
    def open_view(self) -> SnapshotPoint:
        """A REPEATABLE READ view and the stream position it stands at (as the snapshot copier's)."""
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = self._conn.execute(
            "SELECT pg_snapshot_xmin(s), pg_snapshot_xmax(s), ARRAY(SELECT pg_snapshot_xip(s))::text[],"
            " (pg_current_wal_insert_lsn() - '0/0')::bigint FROM pg_current_snapshot() AS s").fetchone()
        assert row is not None
        xmin, xmax, xip, lsn = row
        return SnapshotPoint("", {"postgres": {"xmin": int(xmin), "xmax": int(xmax),
                                               "xip": sorted(int(x) for x in xip), "lsn": int(lsn)}})

    def close_view(self) -> None:
        # COMMIT (the view read only, nothing is written): a setting changed inside the view, such as
        # one_process's, outlives it (a ROLLBACK would undo it); an aborted view is rolled back
        if not self._conn.closed and self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.execute("COMMIT")

    def _execute(self, query: sql.Composed) -> psycopg.Cursor[Any]:
        try:
            return self._conn.execute(query)
        except psycopg.Error as exc:
            raise ReconcileError(f"{self.role}: {str(exc).splitlines()[0]}") from None
