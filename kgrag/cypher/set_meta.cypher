// Store a graph-level metadata value (JSON text) under a key, e.g. the build parameters.
// params: $key, $value
// returns: key
// mode: write
MERGE (m:KgragMeta {key: $key})
SET m.value = $value
RETURN m.key AS key
