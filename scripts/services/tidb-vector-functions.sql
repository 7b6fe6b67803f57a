-- Test fixture: TiDB's vector functions as MariaDB stored functions, so that the TiDB backend's
-- DML and queries run unchanged on the MariaDB stand-in (scripts/services/mariadb.sh loads it).
-- Not part of the backend: on a real TiDB these are built-in functions.
--
-- TiDB vector functions emulated on MariaDB 10.11 (stand-in for tests).
-- Vectors are stored as their text form '[1,2.5,-3]' in a LONGTEXT column.
-- Install once per database (stored functions are schema-scoped):
--   mariadb -uroot DB < tidb-vector-functions.sql
-- Errors mimic TiDB's: ERROR 1105 (HY000) with TiDB's message text.

DELIMITER //

-- Validates a vector text and returns its dimension count (NULL for NULL).
CREATE OR REPLACE FUNCTION _vec_dims_checked(vec LONGTEXT) RETURNS INT
  DETERMINISTIC CONTAINS SQL
BEGIN
  DECLARE msg VARCHAR(512);
  DECLARE d INT;
  IF vec IS NULL THEN RETURN NULL; END IF;
  IF vec NOT REGEXP '^[[:space:]]*\\[[[:space:]]*(-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][-+]?[0-9]+)?([[:space:]]*,[[:space:]]*-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][-+]?[0-9]+)?)*)?[[:space:]]*\\][[:space:]]*$' THEN
    SET msg = CONCAT('Invalid vector text: ', LEFT(vec, 400));
    SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1105, MESSAGE_TEXT = msg;
  END IF;
  SET d = JSON_LENGTH(vec);
  IF d > 16383 THEN
    SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1105,
      MESSAGE_TEXT = 'vector cannot have more than 16383 dimensions';
  END IF;
  RETURN d;
END//

-- Validates two vectors and checks that their dimensions agree.
CREATE OR REPLACE FUNCTION _vec_pair_dims(a LONGTEXT, b LONGTEXT) RETURNS INT
  DETERMINISTIC CONTAINS SQL
BEGIN
  DECLARE da INT DEFAULT _vec_dims_checked(a);
  DECLARE db INT DEFAULT _vec_dims_checked(b);
  DECLARE msg VARCHAR(128);
  IF da <> db THEN
    SET msg = CONCAT('vectors have different dimensions: ', da, ' and ', db);
    SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1105, MESSAGE_TEXT = msg;
  END IF;
  RETURN da;
END//

CREATE OR REPLACE FUNCTION VEC_DIMS(vec LONGTEXT) RETURNS INT
  DETERMINISTIC CONTAINS SQL
RETURN _vec_dims_checked(vec)//

CREATE OR REPLACE FUNCTION VEC_L2_NORM(vec LONGTEXT) RETURNS DOUBLE
  DETERMINISTIC CONTAINS SQL
BEGIN
  DECLARE r DOUBLE;
  IF _vec_dims_checked(vec) IS NULL THEN RETURN NULL; END IF;
  SELECT SQRT(COALESCE(SUM(x.v * x.v), 0)) INTO r
    FROM JSON_TABLE(vec, '$[*]' COLUMNS (v DOUBLE PATH '$')) x;
  RETURN r;
END//

-- The four distance functions share one shape: validate, zip the two arrays
-- by position, aggregate.  The right-hand array goes through a LIMITed
-- derived table so that MariaDB materializes it with a key on `i` and joins
-- by lookup instead of a nested loop (about 10x faster than a plain join).
CREATE OR REPLACE FUNCTION VEC_L2_DISTANCE(a LONGTEXT, b LONGTEXT) RETURNS DOUBLE
  DETERMINISTIC CONTAINS SQL
BEGIN
  DECLARE r DOUBLE;
  IF _vec_pair_dims(a, b) IS NULL THEN RETURN NULL; END IF;
  SELECT SQRT(COALESCE(SUM((x.v - y.v) * (x.v - y.v)), 0)) INTO r
    FROM JSON_TABLE(a, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) x
    JOIN (SELECT i, v FROM JSON_TABLE(b, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) t
          LIMIT 16383) y ON x.i = y.i;
  RETURN r;
END//

CREATE OR REPLACE FUNCTION VEC_L1_DISTANCE(a LONGTEXT, b LONGTEXT) RETURNS DOUBLE
  DETERMINISTIC CONTAINS SQL
BEGIN
  DECLARE r DOUBLE;
  IF _vec_pair_dims(a, b) IS NULL THEN RETURN NULL; END IF;
  SELECT COALESCE(SUM(ABS(x.v - y.v)), 0) INTO r
    FROM JSON_TABLE(a, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) x
    JOIN (SELECT i, v FROM JSON_TABLE(b, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) t
          LIMIT 16383) y ON x.i = y.i;
  RETURN r;
END//

CREATE OR REPLACE FUNCTION VEC_NEGATIVE_INNER_PRODUCT(a LONGTEXT, b LONGTEXT) RETURNS DOUBLE
  DETERMINISTIC CONTAINS SQL
BEGIN
  DECLARE r DOUBLE;
  IF _vec_pair_dims(a, b) IS NULL THEN RETURN NULL; END IF;
  SELECT -COALESCE(SUM(x.v * y.v), 0) INTO r
    FROM JSON_TABLE(a, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) x
    JOIN (SELECT i, v FROM JSON_TABLE(b, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) t
          LIMIT 16383) y ON x.i = y.i;
  RETURN r;
END//

-- 1 - a.b / (|a| |b|), clamped to [0, 2]; NULL when either norm is 0 (TiDB: NaN -> NULL).
CREATE OR REPLACE FUNCTION VEC_COSINE_DISTANCE(a LONGTEXT, b LONGTEXT) RETURNS DOUBLE
  DETERMINISTIC CONTAINS SQL
BEGIN
  DECLARE dot, na, nb, sim DOUBLE;
  IF _vec_pair_dims(a, b) IS NULL THEN RETURN NULL; END IF;
  SELECT SUM(x.v * y.v), SUM(x.v * x.v), SUM(y.v * y.v) INTO dot, na, nb
    FROM JSON_TABLE(a, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) x
    JOIN (SELECT i, v FROM JSON_TABLE(b, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) t
          LIMIT 16383) y ON x.i = y.i;
  IF dot IS NULL OR na = 0 OR nb = 0 THEN RETURN NULL; END IF;
  SET sim = dot / SQRT(na * nb);
  RETURN 1 - GREATEST(-1, LEAST(1, sim));
END//

-- Canonical text, as TiDB prints a VECTOR: each element rounded to float32 and
-- written as the shortest decimal that reads back to the same float32, in
-- fixed notation ('[1.000, 2.5]' -> '[1,2.5]', '[0.123456789]' -> '[0.12345679]').
CREATE OR REPLACE FUNCTION VEC_FROM_TEXT(vec LONGTEXT) RETURNS LONGTEXT
  DETERMINISTIC CONTAINS SQL
BEGIN
  DECLARE r LONGTEXT;
  IF _vec_dims_checked(vec) IS NULL THEN RETURN NULL; END IF;
  SELECT CONCAT('[', COALESCE(GROUP_CONCAT(
           -- expand MariaDB's exponent form (only for |x| < 1e-10 or >= 1e15)
           CASE WHEN s NOT LIKE '%e%' THEN s
                WHEN CAST(SUBSTRING_INDEX(s, 'e', -1) AS SIGNED) < 0 THEN
                  CONCAT(IF(s LIKE '-%', '-', ''), '0.',
                         REPEAT('0', -CAST(SUBSTRING_INDEX(s, 'e', -1) AS SIGNED) - 1),
                         REPLACE(REPLACE(SUBSTRING_INDEX(s, 'e', 1), '-', ''), '.', ''))
                ELSE
                  CONCAT(IF(s LIKE '-%', '-', ''),
                         REPLACE(REPLACE(SUBSTRING_INDEX(s, 'e', 1), '-', ''), '.', ''),
                         REPEAT('0', CAST(SUBSTRING_INDEX(s, 'e', -1) AS SIGNED)
                                     - CHAR_LENGTH(REPLACE(REPLACE(SUBSTRING_INDEX(s, 'e', 1), '-', ''), '.', '')) + 1))
           END
           ORDER BY i SEPARATOR ','), ''), ']') INTO r
  FROM (
    SELECT i, CAST(CASE
        WHEN f = 0 THEN 0
        WHEN CAST(ROUND(f, 0 - e) AS FLOAT) = f THEN ROUND(f, 0 - e)
        WHEN CAST(ROUND(f, 1 - e) AS FLOAT) = f THEN ROUND(f, 1 - e)
        WHEN CAST(ROUND(f, 2 - e) AS FLOAT) = f THEN ROUND(f, 2 - e)
        WHEN CAST(ROUND(f, 3 - e) AS FLOAT) = f THEN ROUND(f, 3 - e)
        WHEN CAST(ROUND(f, 4 - e) AS FLOAT) = f THEN ROUND(f, 4 - e)
        WHEN CAST(ROUND(f, 5 - e) AS FLOAT) = f THEN ROUND(f, 5 - e)
        WHEN CAST(ROUND(f, 6 - e) AS FLOAT) = f THEN ROUND(f, 6 - e)
        WHEN CAST(ROUND(f, 7 - e) AS FLOAT) = f THEN ROUND(f, 7 - e)
        ELSE ROUND(f, 8 - e) END AS CHAR) AS s
    FROM (SELECT i, f, IF(f = 0, 0, FLOOR(LOG10(ABS(f)))) AS e
            FROM (SELECT j.i, CAST(j.v AS FLOAT) AS f
                    FROM JSON_TABLE(vec, '$[*]' COLUMNS (i FOR ORDINALITY, v DOUBLE PATH '$')) j) p0) p
  ) q;
  RETURN r;
END//

-- A VECTOR's text form; on text input TiDB casts implicitly, so this is the
-- same canonicalisation.
CREATE OR REPLACE FUNCTION VEC_AS_TEXT(vec LONGTEXT) RETURNS LONGTEXT
  DETERMINISTIC CONTAINS SQL
RETURN VEC_FROM_TEXT(vec)//

DELIMITER ;
