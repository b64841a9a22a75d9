"""The columnar plan: model rows as Arrow batches, diffed by one query against typed acknowledged values.

- `ingest`: a chunk of model rows (Arrow from DuckDB, or driver tuples) to a batch of normalised,
  typed values per mapped property, with the rows Amplitude would refuse found by vectorised
  tests and told in the same words as the row-at-a-time checks of `amp_sync.values`.
- `acked`: what Amplitude acknowledged, as typed values per property in DuckDB tables.
- `diff`: the diff statement, built once as a sqlglot expression tree: new, changed, unchanged
  and removed keys with a change flag per property and the request items, encoded in bulk.
"""
